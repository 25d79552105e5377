// Room agent/repair: keeping pods captured after the ADD — reconcile (here) and the netns finder for capture in place.
// Reconcile: compare what each captured pod's namespace holds with what it should hold, and act on
// drift by policy — repair in place, delete the pod through the API, or only report.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { withPodIps } from '../../capture/pod.js';
import type { TableContents } from '../../nft/model.js';
import type { RepairPolicy } from '../config.js';
import { planDiff, planDigest, releasePlan, type CapturePlan, type PodPlan } from '../plan/types.js';
import type { AgentMetrics } from '../metrics.js';
import type { PodKey, PodSource } from '../pods/source.js';
import type { KeyedLock } from '../keyed-lock.js';
import { findPodNetns, releaseNetns, type NetnsLookup, type PodNetnsQuery } from './netns-finder.js';
import type { PodRecord } from '../state/records.js';
import type { PodEvents } from '../pod-events.js';
import type { PodStateStore } from '../state/records.js';

export interface ReconcileDeps {
  state: PodStateStore;
  pods: PodSource;
  /** Pod → plan; big pods' plans come from the plan worker (async) and must be released. */
  planPod: (pod: Record<string, unknown>) => PodPlan | Promise<PodPlan>;
  readTables: (netns: string) => Promise<TableContents[]>;
  applyPlan: (netns: string, plan: CapturePlan) => Promise<unknown>;
  /** Deletes a pod through the API (the `delete` policy); absent in standalone mode. */
  deletePod?: (key: PodKey) => Promise<void>;
  /** Finds and proves running pods' netns by uid (the `capture` policy); default: scan procRoot. */
  findNetns?: (pods: readonly PodNetnsQuery[]) => Map<string, NetnsLookup>;
  /** Where the host's processes are seen; default /proc. */
  procRoot?: string;
  policy: RepairPolicy;
  /** Namespaces the ADD never captures: never captured in place either. */
  excludeNamespaces?: readonly string[];
  metrics: AgentMetrics;
  log: Logger;
  /** Kubernetes Events on the pod for each action (absent in standalone mode). */
  events?: PodEvents;
  /** The CNI handler's per-container lock: a pod is never checked while its ADD or DEL runs. */
  lock?: KeyedLock;
}

export interface ReconcileReport {
  checked: number;
  intact: number;
  repaired: string[];
  deleted: string[];
  reported: string[];
  forgotten: string[];
  /** Pods that should be captured but were never seen by a CNI ADD (started before meshcni). */
  uncaptured: string[];
  /** Of those, the ones programmed in place (the `capture` policy). */
  captured: string[];
  errors: string[];
}

const podName = (k: { namespace: string; name: string }): string => `${k.namespace}/${k.name}`;
const inPlace = (p: RepairPolicy): boolean => p === 'capture' || p === 'repair';

/** One pass over every pod the agent knows. Never throws: problems are counted and reported. */
export async function reconcileOnce(deps: ReconcileDeps): Promise<ReconcileReport> {
  const { state, log, metrics } = deps;
  const report: ReconcileReport = {
    checked: 0,
    intact: 0,
    repaired: [],
    deleted: [],
    reported: [],
    forgotten: [],
    uncaptured: [],
    captured: [],
    errors: [],
  };
  const known = new Set<string>();
  for (const listed of state.all()) {
    const one = async (): Promise<void> => {
      // Re-read under the lock: an ADD or DEL may have changed or removed the record meanwhile.
      const rec = state.get(listed.containerId);
      if (!rec) return;
      const name = podName(rec);
      if (isScanned(rec)) return checkScanned(deps, report, rec, known);
      known.add(name);
      if (!existsSync(rec.netns)) {
        // The sandbox is gone and its DEL never reached us (agent down at the time): forget it.
        await state.delete(rec.containerId);
        report.forgotten.push(name);
        log.info(
          { namespace: rec.namespace, pod: rec.name, containerId: rec.containerId, netns: rec.netns },
          'reconcile: namespace gone, forgot the pod',
        );
        return;
      }
      report.checked++;
      try {
        const obj = await deps.pods.lookup(
          { namespace: rec.namespace, name: rec.name, ...(rec.uid ? { uid: rec.uid } : {}) },
          { timeoutMs: 0 },
        );
        if (!obj) return; // deleted in the API; its DEL is on the way
        await checkPod(deps, report, rec, obj, rec.netns);
      } catch (e) {
        report.errors.push(`${name}: ${(e as Error).message}`);
        metrics.repairs.inc({ result: 'error' });
        log.error(
          { namespace: rec.namespace, pod: rec.name, containerId: rec.containerId, err: (e as Error).message },
          'reconcile failed for a pod',
        );
      }
    };
    await (deps.lock ? deps.lock.run(listed.containerId, one) : one());
  }
  await findUncaptured(deps, report, known);
  return report;
}

/** Compares a recorded pod's netns with its plan and acts on drift by policy. */
async function checkPod(
  deps: ReconcileDeps,
  report: ReconcileReport,
  rec: PodRecord,
  obj: Record<string, unknown>,
  netns: string,
): Promise<void> {
  // Planned with the IPs its ADD planned with (the runtime's result), so the two plans agree.
  const ips = Array.isArray(rec.podIps) && rec.podIps.every((ip) => typeof ip === 'string') ? rec.podIps : null;
  const plan = await deps.planPod(ips ? withPodIps(obj, ips) : obj);
  if (!plan.capture) return;
  try {
    const diffs = await planDiff(plan, netns, deps.readTables);
    if (diffs.length === 0) {
      report.intact++;
      return;
    }
    await act(deps, report, { namespace: rec.namespace, name: rec.name }, netns, plan, diffs);
    if (inPlace(deps.policy))
      await deps.state.put({ ...rec, rulesDigest: planDigest(plan), capturedAt: new Date().toISOString() });
  } finally {
    releasePlan(plan);
  }
}

/** A record of a pod captured in place: no path, the netns identity found by scanning. */
const isScanned = (rec: PodRecord): boolean => rec.netns === '' && typeof rec.netnsId === 'string';

const findNetns = (deps: ReconcileDeps, q: readonly PodNetnsQuery[]): Map<string, NetnsLookup> =>
  deps.findNetns ? deps.findNetns(q) : findPodNetns(q, deps.procRoot);

/** The pod's IPs as the API reports them: a proven netns must hold one. */
function podIps(obj: Record<string, unknown>): string[] {
  const status = (obj.status ?? {}) as { podIP?: unknown; podIPs?: { ip?: unknown }[] };
  const ips = new Set<string>();
  if (typeof status.podIP === 'string' && status.podIP) ips.add(status.podIP);
  for (const p of Array.isArray(status.podIPs) ? status.podIPs : [])
    if (typeof p?.ip === 'string' && p.ip) ips.add(p.ip);
  return [...ips];
}

/**
 * A pod captured in place is found again, and proven again, on every pass; its record keeps the
 * netns identity, never a /proc/<pid> path. If the proven netns is no longer the recorded one (the
 * sandbox was replaced, or the pid now belongs to someone else) nothing is programmed: the record
 * is forgotten and the pod is looked at afresh, as one that never saw an ADD.
 */
async function checkScanned(
  deps: ReconcileDeps,
  report: ReconcileReport,
  rec: PodRecord,
  known: Set<string>,
): Promise<void> {
  const name = podName(rec);
  const base = { namespace: rec.namespace, pod: rec.name, containerId: rec.containerId, netnsId: rec.netnsId };
  const forget = async (why: string): Promise<void> => {
    await deps.state.delete(rec.containerId);
    report.forgotten.push(name);
    deps.log.info(
      { ...base, reason: why },
      'reconcile: the netns of a pod captured in place is gone or changed; forgot it',
    );
  };
  let found: NetnsLookup | undefined;
  try {
    const obj = rec.uid
      ? await deps.pods.lookup({ namespace: rec.namespace, name: rec.name, uid: rec.uid }, { timeoutMs: 0 })
      : undefined;
    if (!obj || !rec.uid) return forget('the pod is gone from the API');
    found = findNetns(deps, [{ uid: rec.uid, ips: podIps(obj) }]).get(rec.uid);
    if (!found || 'problem' in found) return forget(found?.problem ?? 'not found');
    if (found.id !== rec.netnsId) return forget(`the pod's netns is now ${found.id}, not the recorded ${rec.netnsId}`);
    known.add(name);
    report.checked++;
    await checkPod(deps, report, rec, obj, found.netns);
  } catch (e) {
    report.errors.push(`${name}: ${(e as Error).message}`);
    deps.metrics.repairs.inc({ result: 'error' });
    deps.log.error({ ...base, err: (e as Error).message }, 'reconcile failed for a pod');
  } finally {
    releaseNetns(found);
  }
}

async function act(
  deps: ReconcileDeps,
  report: ReconcileReport,
  key: PodKey,
  netns: string,
  plan: CapturePlan,
  diffs: string[],
): Promise<void> {
  const base = { namespace: key.namespace, pod: key.name, netns, differences: diffs.length, first: diffs[0] };
  if (inPlace(deps.policy)) {
    await deps.applyPlan(netns, plan);
    report.repaired.push(podName(key));
    deps.metrics.repairs.inc({ result: 'repaired' });
    deps.log.warn(base, 'reconcile: rules were missing or changed; re-applied in place');
    deps.events?.emit(
      key,
      'Warning',
      'RulesRepaired',
      `meshcni re-applied the traffic redirect rules in place: ${diffs.length} difference(s), first: ${diffs[0]}`,
    );
  } else if (deps.policy === 'delete' && deps.deletePod) {
    await deps.deletePod(key);
    report.deleted.push(podName(key));
    deps.metrics.repairs.inc({ result: 'deleted' });
    deps.log.warn(base, 'reconcile: rules were missing or changed; deleted the pod so it restarts captured');
    deps.events?.emit(
      key,
      'Warning',
      'DeletedForCapture',
      `meshcni deleted the pod so it restarts captured: its redirect rules were missing or changed (first: ${diffs[0]})`,
    );
  } else {
    report.reported.push(podName(key));
    deps.metrics.repairs.inc({ result: 'reported' });
    deps.log.warn(base, 'reconcile: rules are missing or changed (policy: report only)');
  }
}

/** Running pods that should be captured but that no ADD ever reached: started before meshcni. */
async function findUncaptured(deps: ReconcileDeps, report: ReconcileReport, known: Set<string>): Promise<void> {
  let pods: Record<string, unknown>[];
  try {
    pods = await deps.pods.list();
  } catch (e) {
    report.errors.push(`listing pods: ${(e as Error).message}`);
    return;
  }
  // Pod objects, not plans: a big pod's plan is made again when (and if) it is captured in place,
  // so the worker never holds many big plans at once.
  const todo: { key: PodKey & { uid?: string }; obj: Record<string, unknown> }[] = [];
  for (const obj of pods) {
    const meta = (obj.metadata ?? {}) as { namespace?: string; name?: string; uid?: string };
    const status = (obj.status ?? {}) as { phase?: string };
    const spec = (obj.spec ?? {}) as { hostNetwork?: boolean };
    if (!meta.name || status.phase !== 'Running' || spec.hostNetwork) continue;
    const key = {
      namespace: meta.namespace ?? 'default',
      name: meta.name,
      ...(typeof meta.uid === 'string' && meta.uid ? { uid: meta.uid } : {}),
    };
    if (known.has(podName(key)) || deps.excludeNamespaces?.includes(key.namespace)) continue;
    let plan: PodPlan;
    try {
      plan = await deps.planPod(obj);
    } catch {
      continue; // its ADD would have failed too; nothing to repair
    }
    releasePlan(plan);
    if (!plan.capture) continue;
    report.uncaptured.push(podName(key));
    todo.push({ key, obj });
  }
  if (todo.length === 0) return;
  if (deps.policy === 'capture') return captureInPlace(deps, report, todo);
  for (const { key } of todo) {
    if (deps.policy === 'delete' && deps.deletePod) {
      try {
        await deps.deletePod(key);
        report.deleted.push(podName(key));
        deps.metrics.repairs.inc({ result: 'deleted' });
        deps.log.warn(
          { namespace: key.namespace, pod: key.name },
          'reconcile: pod started before meshcni; deleted it so it restarts captured',
        );
        deps.events?.emit(
          key,
          'Warning',
          'DeletedForCapture',
          'meshcni deleted the pod so it restarts captured: it started before meshcni was on the node',
        );
      } catch (e) {
        report.errors.push(`${podName(key)}: ${(e as Error).message}`);
      }
    } else {
      deps.metrics.repairs.inc({ result: 'uncaptured' });
      deps.log.warn(
        { namespace: key.namespace, pod: key.name },
        'reconcile: running pod was never captured (started before meshcni); restart it or use repairPolicy: capture or delete',
      );
    }
  }
}

/** Programs each running pod in its own netns (found by uid) with the one transaction an ADD uses. */
async function captureInPlace(
  deps: ReconcileDeps,
  report: ReconcileReport,
  todo: { key: PodKey; obj: Record<string, unknown> }[],
): Promise<void> {
  const found = findNetns(
    deps,
    todo.flatMap(({ key, obj }) => (key.uid ? [{ uid: key.uid, ips: podIps(obj) }] : [])),
  );
  try {
    await captureEach(deps, report, todo, found);
  } finally {
    for (const f of found.values()) releaseNetns(f);
  }
}

async function captureEach(
  deps: ReconcileDeps,
  report: ReconcileReport,
  todo: { key: PodKey; obj: Record<string, unknown> }[],
  found: Map<string, NetnsLookup>,
): Promise<void> {
  for (const { key, obj } of todo) {
    const name = podName(key);
    const where = key.uid ? found.get(key.uid) : { problem: 'the pod object has no metadata.uid' };
    const base = { namespace: key.namespace, pod: key.name, uid: key.uid };
    if (!where || 'problem' in where) {
      const problem = where?.problem ?? 'not looked up';
      report.errors.push(`${name}: ${problem}`);
      deps.metrics.repairs.inc({ result: 'error' });
      deps.log.warn(
        { ...base, err: problem },
        'reconcile: cannot find the netns of a pod started before meshcni; it stays uncaptured',
      );
      deps.events?.emit(
        key,
        'Warning',
        'CaptureInPlaceRefused',
        `meshcni did not capture this running pod in place: ${problem}`,
      );
      continue;
    }
    let plan: PodPlan | undefined;
    try {
      plan = await deps.planPod(obj);
      if (!plan.capture) continue; // changed meanwhile: no longer captured
      await deps.applyPlan(where.netns, plan);
      await deps.state.put({
        containerId: `repair-${key.uid}`,
        ifName: '',
        // Never the /proc/<pid> path: a reused pid would name another netns. Found again by uid.
        netns: '',
        netnsId: where.id,
        namespace: key.namespace,
        name: key.name,
        uid: key.uid!,
        rulesDigest: planDigest(plan),
        layout: plan.layout,
        capturedAt: new Date().toISOString(),
      });
      report.captured.push(name);
      deps.metrics.repairs.inc({ result: 'captured' });
      deps.events?.emit(
        key,
        'Normal',
        'CapturedInPlace',
        `meshcni captured this pod in place (it started before meshcni): netns ${where.id}, found by process ${where.pid}`,
      );
      deps.log.warn(
        { ...base, netnsId: where.id, pid: where.pid, ...plan.summary },
        'reconcile: pod started before meshcni; captured it in place',
      );
    } catch (e) {
      // One transaction: a netns that vanished (pod gone mid-repair) holds nothing half-applied.
      report.errors.push(`${name}: ${(e as Error).message}`);
      deps.metrics.repairs.inc({ result: 'error' });
      deps.log.error(
        { ...base, netnsId: where.id, err: (e as Error).message },
        'reconcile: capturing a pod in place failed',
      );
    } finally {
      if (plan) releasePlan(plan);
    }
  }
}
