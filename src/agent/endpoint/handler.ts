// Room agent/endpoint: what the runtime reaches — the socket server (server.ts) and the CNI commands (here).
// What the agent does for each CNI command: identify the pod, decide, program one transaction,
// remember it; CHECK compares the namespace with the plan; DEL and GC forget.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { TableContents } from '../../nft/model.js';
import { tableLabels } from '../../nft/model.js';
import {
  CNI_ERR,
  CniError,
  convertResult,
  podArgs,
  podArgsOrEmpty,
  prevResultIps,
  runtimeValueError,
  type CniRequest,
} from '../cni.js';
import { withPodIps } from '../../capture/pod.js';
import { KeyedLock } from '../keyed-lock.js';
import { planDiff, planDigest, releasePlan, type CapturePlan, type PodPlan } from '../plan/types.js';
import type { PodEvents } from '../pod-events.js';
import type { AgentMetrics } from '../metrics.js';
import type { PodSource } from '../pods/source.js';
import { StateError, type PodRecord, type PodStateStore } from '../state/records.js';

export interface HandlerDeps {
  excludeNamespaces: readonly string[];
  pods: PodSource;
  /** Pure: pod object → plan (big pods: asynchronously, off the event loop). Throws an Error naming the bad annotation and value. */
  planPod: (pod: Record<string, unknown>) => PodPlan | Promise<PodPlan>;
  /** Programs the plan into the namespace: one nftables transaction (plus routes, where needed). */
  applyPlan: (netns: string, plan: CapturePlan) => Promise<unknown>;
  readTables: (netns: string) => Promise<TableContents[]>;
  /** Deletes the recorded tables (`family name`) from a namespace (DEL). */
  removeTables?: (netns: string, labels: string[]) => Promise<void>;
  /** Serialises work per container id; shared with whatever else changes a pod's record or rules. */
  lock?: KeyedLock;
  state: PodStateStore;
  metrics: AgentMetrics;
  log: Logger;
  /** How long a lookup may wait for the pod to show up. */
  podLookupTimeoutMs?: number;
  isReady: () => boolean;
  /** Kubernetes Events on the pod: a refused ADD is one (absent in standalone mode). */
  events?: PodEvents;
}

interface PodIdentity {
  namespace: string;
  name: string;
  uid?: string;
}

/**
 * An error for a log line's `err`, reduced to the pino err serializer's shape { type, message,
 * stack, code? } whatever was thrown (CniError's details and status, causes, … are left out).
 */
export function errFields(e: unknown): { type: string; message: string; stack?: string; code?: string | number } {
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  // No prototype: pino's serializer then takes `type` from the object instead of naming it Object.
  return Object.assign(Object.create(null) as object, {
    type: err.name,
    message: err.message,
    ...(err.stack ? { stack: err.stack } : {}),
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
  });
}

/** Kernel refusals of the runtime's netns (missing, not a netns, the host's own) are bad input. */
const BAD_NETNS_CODES = new Set([
  'ENOENT',
  'ENOTNETNS',
  'EHOSTNETNS',
  'EINVAL',
  'ENOTDIR',
  'ENAMETOOLONG',
  'ELOOP',
  'EACCES',
]);

function kernelError(what: string, e: unknown): CniError {
  if (e instanceof CniError) return e;
  const code = (e as { code?: unknown }).code;
  const bad = typeof code === 'string' && BAD_NETNS_CODES.has(code);
  return new CniError(
    bad ? CNI_ERR.invalidEnv : CNI_ERR.internal,
    `${what}: ${(e as Error).message}`,
    '',
    bad ? 400 : 500,
  );
}

/** A Warning on the pod naming why its ADD failed (what `kubectl describe pod` shows next to the kubelet's). */
function refusedAddEvent(events: PodEvents | undefined, req: CniRequest, e: unknown): void {
  if (!events) return;
  const { namespace, name, uid } = podArgsOrEmpty(req.args);
  if (!namespace || !name) return; // no pod to put it on
  const code = e instanceof CniError ? ` (CNI code ${e.code})` : '';
  events.emit(
    { namespace, name, ...(uid ? { uid } : {}) },
    'Warning',
    'CaptureRefused',
    `meshcni refused the pod's network ADD${code}: ${(e as Error).message}`,
  );
}

/** namespace/pod/containerId for log lines, from whatever of the request is readable. */
function logIdentity(req: CniRequest): { namespace?: string; pod?: string; containerId: string } {
  const { namespace, name } = podArgsOrEmpty(req.args);
  return { namespace, pod: name, containerId: req.containerId };
}

function podIdentity(req: CniRequest): PodIdentity | null {
  const { namespace, name, uid } = podArgs(req.args);
  if (!namespace || !name) return null;
  return uid ? { namespace, name, uid } : { namespace, name };
}

/** A request's pod, its plan, and the pod's IPs from the runtime's result when it had them. */
interface Planned {
  pod: PodIdentity | null;
  plan: PodPlan;
  podIps?: string[];
}

export function createCniHandler(deps: HandlerDeps): (req: CniRequest) => Promise<Record<string, unknown> | null> {
  const { log, metrics } = deps;
  const lock = deps.lock ?? new KeyedLock();

  /** Pod → plan, or the reason it is skipped. Errors in the pod's settings fail the request. */
  async function plan(req: CniRequest): Promise<Planned> {
    const pod = podIdentity(req);
    if (!pod)
      return {
        pod,
        plan: { capture: false, reason: 'not a Kubernetes pod: CNI_ARGS has no K8S_POD_NAMESPACE/K8S_POD_NAME' },
      };
    if (deps.excludeNamespaces.includes(pod.namespace)) {
      return { pod, plan: { capture: false, reason: `namespace ${pod.namespace} is excluded` } };
    }
    const obj = await deps.pods.lookup(pod, { timeoutMs: deps.podLookupTimeoutMs ?? 2000 });
    if (!obj) {
      throw new CniError(
        CNI_ERR.tryAgainLater,
        `pod ${pod.namespace}/${pod.name} not found; cannot decide whether to capture it`,
        '',
        503,
      );
    }
    try {
      const first = await deps.planPod(obj);
      // Istio 1.30.3's rules depend on the pod's IPs (whether IPv6 rules are written): the runtime's
      // result holds them now, the API server's status may not yet. Other rule sets never read them,
      // so their pods are planned once, from the object alone.
      const ips =
        first.capture && first.summary.istioRules === '1.30' ? prevResultIps(req.config.prevResult) : undefined;
      if (!ips) return { pod, plan: first };
      releasePlan(first);
      return { pod, plan: await deps.planPod(withPodIps(obj, ips)), podIps: ips };
    } catch (e) {
      if (e instanceof CniError) throw e; // the planner's own verdict (queue full, worker died)
      throw new CniError(CNI_ERR.invalidConfig, `pod ${pod.namespace}/${pod.name}: ${(e as Error).message}`, '', 400);
    }
  }

  /** Puts the record back to what it was before a failed ADD; a failure here is logged, not thrown. */
  async function restoreRecord(containerId: string, previous: PodRecord | undefined): Promise<void> {
    try {
      await (previous ? deps.state.put(previous) : deps.state.delete(containerId));
    } catch (e) {
      log.error(
        { containerId, err: errFields(e) },
        'could not restore the pod record after a failed ADD; reconcile will re-check it',
      );
    }
  }

  async function add(req: CniRequest, t0: number, { pod, plan: p, podIps }: Planned): Promise<Record<string, unknown>> {
    const base = { namespace: pod?.namespace, pod: pod?.name, containerId: req.containerId, netns: req.netns };
    if (!p.capture) {
      log.info({ ...base, decision: 'skip', reason: p.reason, ms: performance.now() - t0 }, 'pod not captured');
      metrics.requests.inc({ command: 'ADD', result: 'skipped' });
      return convertResult(req.config.prevResult, req.config.cniVersion);
    }
    const who = `pod ${pod!.namespace}/${pod!.name}`;
    const record: PodRecord = {
      containerId: req.containerId,
      ifName: req.ifName,
      netns: req.netns,
      namespace: pod!.namespace,
      name: pod!.name,
      ...(pod!.uid ? { uid: pod!.uid } : {}),
      rulesDigest: planDigest(p),
      layout: p.layout,
      ...(podIps ? { podIps } : {}),
      tables: 'held' in p ? p.held.labels : tableLabels(p.tables),
      capturedAt: new Date().toISOString(),
    };
    // The record is written before the kernel is touched: when the state dir cannot take it (full,
    // read-only) the ADD fails with nothing programmed, and a kill between the two leaves a record
    // whose rules reconcile finds missing and repairs — never rules without a record.
    const previous = deps.state.get(req.containerId);
    if (await alreadyProgrammed(previous, req, p)) {
      // A second chain (Multus and the primary both list meshcni) ADDs the same netns: the rules
      // are exactly right, so no replace (and no RCU wait) and the first chain's record stays.
      metrics.requests.inc({ command: 'ADD', result: 'ok' });
      log.info(
        { ...base, decision: 'capture', unchanged: true, firstIfName: previous!.ifName, ms: performance.now() - t0 },
        'pod already captured; rules left as they are',
      );
      return convertResult(req.config.prevResult, req.config.cniVersion);
    }
    try {
      await deps.state.put(record);
    } catch (e) {
      if (e instanceof StateError) throw new CniError(CNI_ERR.io, `${who}: not captured, ${e.message}`, '', 500);
      throw e;
    }
    const ta = performance.now();
    try {
      await deps.applyPlan(req.netns, p);
    } catch (e) {
      // Nothing changed in the namespace (one transaction; routes this request added are taken back).
      await restoreRecord(req.containerId, previous);
      throw kernelError(who, e);
    }
    const applyMs = performance.now() - ta;
    metrics.applySeconds.observe({ layout: p.layout }, applyMs / 1000);
    metrics.requests.inc({ command: 'ADD', result: 'ok' });
    log.info({ ...base, decision: 'capture', ...p.summary, applyMs, ms: performance.now() - t0 }, 'pod captured');
    return convertResult(req.config.prevResult, req.config.cniVersion);
  }

  /** Same netns, same rules recorded, and the kernel holds exactly them. */
  async function alreadyProgrammed(previous: PodRecord | undefined, req: CniRequest, p: CapturePlan): Promise<boolean> {
    if (!previous || previous.netns !== req.netns || previous.rulesDigest !== planDigest(p)) return false;
    return (
      (await planDiff(p, req.netns, deps.readTables).catch(() => ['the namespace could not be read'])).length === 0
    );
  }

  async function check(req: CniRequest, { pod, plan: p }: Planned): Promise<null> {
    if (!p.capture) {
      metrics.requests.inc({ command: 'CHECK', result: 'skipped' });
      return null;
    }
    const who = `pod ${pod!.namespace}/${pod!.name}`;
    let diffs: string[];
    try {
      diffs = await planDiff(p, req.netns, deps.readTables);
    } catch (e) {
      throw kernelError(who, e);
    }
    if (diffs.length > 0) {
      log.warn(
        { namespace: pod!.namespace, pod: pod!.name, containerId: req.containerId, diffs: diffs.slice(0, 20) },
        'CHECK found rules missing or changed',
      );
      throw new CniError(
        CNI_ERR.internal,
        `${who}: ${diffs.length} rule difference(s) in ${req.netns}`,
        diffs.slice(0, 20).join('\n'),
      );
    }
    metrics.requests.inc({ command: 'CHECK', result: 'ok' });
    return null;
  }

  async function del(req: CniRequest): Promise<null> {
    // Never fails: the runtime retries a failed DEL forever, and there is nothing it could fix.
    const rec = deps.state.get(req.containerId);
    const base = { ...logIdentity(req), netns: req.netns };
    if (rec && rec.ifName !== req.ifName && rec.netns === req.netns && existsSync(req.netns)) {
      // Another chain's attachment goes (Multus secondary); the pod and its rules stay: keep tracking it.
      metrics.requests.inc({ command: 'DEL', result: 'ok' });
      log.info(
        { ...base, ifName: req.ifName, keptFor: rec.ifName },
        'DEL of another attachment; the pod stays captured',
      );
      return null;
    }
    // The namespace usually goes away with its rules; removing our tables makes an ADD that raced
    // this DEL (and lost) leave nothing behind either.
    // Only in the namespace the record names: a DEL never points our deletes at another one.
    if (rec?.tables && req.netns === rec.netns && deps.removeTables) {
      await deps.removeTables(req.netns, rec.tables).catch((e: unknown) => {
        const code = (e as { code?: unknown }).code;
        if (code !== 'ENOENT' && code !== 'ENOTNETNS')
          log.warn({ ...base, err: errFields(e) }, 'DEL could not remove the pod tables; the namespace is going away');
      });
    }
    let had = rec !== undefined;
    try {
      had = await deps.state.delete(req.containerId);
    } catch (e) {
      log.error({ ...base, err: errFields(e) }, 'DEL could not remove the pod record file; forgotten in memory');
    }
    metrics.requests.inc({ command: 'DEL', result: 'ok' });
    log.info({ ...base, forgot: had }, 'pod deleted');
    return null;
  }

  async function gc(req: CniRequest): Promise<null> {
    const valid = req.config['cni.dev/valid-attachments'];
    if (!Array.isArray(valid))
      throw new CniError(
        CNI_ERR.invalidConfig,
        "GC needs 'cni.dev/valid-attachments' in the network configuration",
        '',
        400,
      );
    const keep = new Set(
      valid.map((a) => (a as { containerID?: unknown }).containerID).filter((x): x is string => typeof x === 'string'),
    );
    const dropped = deps.state.all().filter((r) => !keep.has(r.containerId));
    for (const r of dropped) await lock.run(r.containerId, () => deps.state.delete(r.containerId));
    metrics.requests.inc({ command: 'GC', result: 'ok' });
    log.info({ kept: keep.size, dropped: dropped.map((r) => r.containerId) }, 'garbage collected stale attachments');
    return null;
  }

  async function perContainer(req: CniRequest): Promise<Record<string, unknown> | null> {
    if (req.command !== 'ADD' && req.command !== 'CHECK') return del(req);
    const t0 = performance.now();
    const planned = await plan(req);
    try {
      return req.command === 'ADD' ? await add(req, t0, planned) : await check(req, planned);
    } finally {
      releasePlan(planned.plan);
    }
  }

  return async (req) => {
    metrics.inFlight.inc();
    const t0 = performance.now();
    try {
      switch (req.command) {
        case 'ADD':
        case 'CHECK':
        case 'DEL': {
          const bad = runtimeValueError(req);
          if (bad && req.command === 'DEL') {
            metrics.requests.inc({ command: 'DEL', result: 'ok' });
            log.warn(
              { ...logIdentity(req), command: 'DEL', problem: bad.message },
              'DEL with an invalid value: nothing of it can be ours, nothing to do',
            );
            return null;
          }
          if (bad) throw bad;
          // One request per container at a time: ADD, CHECK and DEL of one container never interleave.
          const r = await lock.run(req.containerId, () => perContainer(req));
          if (req.command === 'ADD') metrics.addSeconds.observe({ result: 'ok' }, (performance.now() - t0) / 1000);
          return r;
        }
        case 'GC':
          return await gc(req);
        case 'STATUS':
          if (!deps.isReady()) throw new CniError(CNI_ERR.pluginNotAvailable, 'meshcni agent is not ready', '', 503);
          return null;
      }
    } catch (e) {
      metrics.requests.inc({ command: req.command, result: 'error' });
      if (req.command === 'ADD') metrics.addSeconds.observe({ result: 'error' }, (performance.now() - t0) / 1000);
      log.error(
        { command: req.command, ...logIdentity(req), netns: req.netns, err: errFields(e) },
        'CNI request failed',
      );
      if (req.command === 'ADD') refusedAddEvent(deps.events, req, e);
      throw e instanceof CniError
        ? e
        : new CniError(CNI_ERR.internal, `${req.command} of container ${req.containerId}: ${(e as Error).message}`);
    } finally {
      metrics.inFlight.dec();
    }
  };
}
