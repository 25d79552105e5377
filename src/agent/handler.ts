// What the agent does for each CNI command: identify the pod, decide, program one transaction,
// remember it; CHECK compares the namespace with the plan; DEL and GC forget.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { describeTable, diffTables } from '../nft/ruleset.js';
import type { TableContents } from '../nft/model.js';
import { CNI_ERR, CniError, convertResult, parseCniArgs, type CniRequest } from './cni.js';
import type { AgentMetrics } from './metrics.js';
import type { PodSource } from './pods/source.js';
import type { PodRecord, PodStateStore } from './state.js';

/** The capture decision for a pod, with what to program when captured. */
export type PodPlan =
  | { capture: true; layout: string; tables: TableContents[]; summary: Record<string, unknown> }
  | { capture: false; reason: string };

type CapturePlan = Extract<PodPlan, { capture: true }>;

export interface HandlerDeps {
  excludeNamespaces: readonly string[];
  pods: PodSource;
  /** Pure: pod object → plan. Throws an Error naming the bad annotation and value. */
  planPod: (pod: Record<string, unknown>) => PodPlan;
  /** Programs the plan into the namespace: one nftables transaction (plus routes, where needed). */
  applyPlan: (netns: string, plan: CapturePlan) => Promise<unknown>;
  readTables: (netns: string) => Promise<TableContents[]>;
  state: PodStateStore;
  metrics: AgentMetrics;
  log: Logger;
  /** How long a lookup may wait for the pod to show up. */
  podLookupTimeoutMs?: number;
  isReady: () => boolean;
}

const digests = new WeakMap<readonly TableContents[], string>();

/** sha256 of the tables' canonical description (memoised per ruleset object: plans are shared). */
export function rulesDigest(tables: readonly TableContents[]): string {
  let d = digests.get(tables);
  if (!d) {
    const h = createHash('sha256');
    for (const t of tables) for (const line of describeTable(t)) h.update(line).update('\n');
    d = h.digest('hex');
    digests.set(tables, d);
  }
  return d;
}

interface PodIdentity {
  namespace: string;
  name: string;
  uid?: string;
}

function podIdentity(req: CniRequest): PodIdentity | null {
  const a = parseCniArgs(req.args);
  const namespace = a.get('K8S_POD_NAMESPACE');
  const name = a.get('K8S_POD_NAME');
  if (!namespace || !name) return null;
  const uid = a.get('K8S_POD_UID');
  return uid ? { namespace, name, uid } : { namespace, name };
}

export function createCniHandler(deps: HandlerDeps): (req: CniRequest) => Promise<Record<string, unknown> | null> {
  const { log, metrics } = deps;

  /** Pod → plan, or the reason it is skipped. Errors in the pod's settings fail the request. */
  async function plan(req: CniRequest): Promise<{ pod: PodIdentity | null; plan: PodPlan }> {
    const pod = podIdentity(req);
    if (!pod) return { pod, plan: { capture: false, reason: 'not a Kubernetes pod: CNI_ARGS has no K8S_POD_NAMESPACE/K8S_POD_NAME' } };
    if (deps.excludeNamespaces.includes(pod.namespace)) {
      return { pod, plan: { capture: false, reason: `namespace ${pod.namespace} is excluded` } };
    }
    const obj = await deps.pods.lookup(pod, { timeoutMs: deps.podLookupTimeoutMs ?? 2000 });
    if (!obj) {
      throw new CniError(CNI_ERR.tryAgainLater, `pod ${pod.namespace}/${pod.name} not found; cannot decide whether to capture it`, '', 503);
    }
    try {
      return { pod, plan: deps.planPod(obj) };
    } catch (e) {
      throw new CniError(CNI_ERR.invalidConfig, `pod ${pod.namespace}/${pod.name}: ${(e as Error).message}`, '', 400);
    }
  }

  async function add(req: CniRequest): Promise<Record<string, unknown>> {
    const t0 = performance.now();
    const { pod, plan: p } = await plan(req);
    const base = { namespace: pod?.namespace, pod: pod?.name, containerId: req.containerId, netns: req.netns };
    if (!p.capture) {
      log.info({ ...base, decision: 'skip', reason: p.reason, ms: performance.now() - t0 }, 'pod not captured');
      metrics.requests.inc({ command: 'ADD', result: 'skipped' });
      return convertResult(req.config.prevResult, req.config.cniVersion);
    }
    const ta = performance.now();
    const record = {
      containerId: req.containerId,
      ifName: req.ifName,
      netns: req.netns,
      namespace: pod!.namespace,
      name: pod!.name,
      ...(pod!.uid ? { uid: pod!.uid } : {}),
      rulesDigest: rulesDigest(p.tables),
      layout: p.layout,
      capturedAt: new Date().toISOString(),
    };
    // The record is written while the kernel commits, off the critical path.
    const previous = deps.state.get(req.containerId);
    if (await alreadyProgrammed(previous, req, p)) {
      // A second chain (Multus and the primary both list meshcni) ADDs the same netns: the rules
      // are exactly right, so no replace (and no RCU wait) and the first chain's record stays.
      metrics.requests.inc({ command: 'ADD', result: 'ok' });
      log.info({ ...base, decision: 'capture', unchanged: true, firstIfName: previous!.ifName, ms: performance.now() - t0 }, 'pod already captured; rules left as they are');
      return convertResult(req.config.prevResult, req.config.cniVersion);
    }
    // The commit is queued first so it never waits behind the record's file I/O in the thread pool.
    const applying = deps.applyPlan(req.netns, p);
    const saved = deps.state.put(record);
    try {
      await applying;
    } catch (e) {
      // Nothing changed in the namespace (one transaction): the record goes back to what it was.
      await saved.catch(() => undefined);
      await (previous ? deps.state.put(previous) : deps.state.delete(req.containerId)).catch(() => undefined);
      const code = (e as { code?: string }).code;
      // A netns that is missing, not a netns, or the host's own is the runtime's bad input, not ours.
      const badInput = code === 'ENOENT' || code === 'ENOTNETNS' || code === 'EHOSTNETNS' || code === 'EINVAL';
      throw new CniError(badInput ? CNI_ERR.invalidEnv : CNI_ERR.internal, `pod ${pod!.namespace}/${pod!.name}: ${(e as Error).message}`, '', badInput ? 400 : 500);
    }
    const applyMs = performance.now() - ta;
    metrics.applySeconds.observe({ layout: p.layout }, applyMs / 1000);
    await saved;
    metrics.requests.inc({ command: 'ADD', result: 'ok' });
    log.info({ ...base, decision: 'capture', ...p.summary, applyMs, ms: performance.now() - t0 }, 'pod captured');
    return convertResult(req.config.prevResult, req.config.cniVersion);
  }

  /** Same netns, same rules recorded, and the kernel holds exactly them. */
  async function alreadyProgrammed(previous: PodRecord | undefined, req: CniRequest, p: CapturePlan): Promise<boolean> {
    if (!previous || previous.netns !== req.netns || previous.rulesDigest !== rulesDigest(p.tables)) return false;
    return diffTables(p.tables, await deps.readTables(req.netns).catch(() => [])).length === 0;
  }

  async function check(req: CniRequest): Promise<null> {
    const { pod, plan: p } = await plan(req);
    if (!p.capture) {
      metrics.requests.inc({ command: 'CHECK', result: 'skipped' });
      return null;
    }
    const diffs = diffTables(p.tables, await deps.readTables(req.netns));
    if (diffs.length > 0) {
      log.warn({ namespace: pod!.namespace, pod: pod!.name, containerId: req.containerId, diffs: diffs.slice(0, 20) }, 'CHECK found rules missing or changed');
      throw new CniError(CNI_ERR.internal, `pod ${pod!.namespace}/${pod!.name}: ${diffs.length} rule difference(s) in ${req.netns}`, diffs.slice(0, 20).join('\n'));
    }
    metrics.requests.inc({ command: 'CHECK', result: 'ok' });
    return null;
  }

  async function del(req: CniRequest): Promise<null> {
    // The namespace is going away with its rules; only our record needs forgetting. Never fails.
    const rec = deps.state.get(req.containerId);
    if (rec && rec.ifName !== req.ifName && rec.netns === req.netns && existsSync(req.netns)) {
      // Another chain's attachment goes (Multus secondary); the pod and its rules stay: keep tracking it.
      metrics.requests.inc({ command: 'DEL', result: 'ok' });
      log.info({ containerId: req.containerId, ifName: req.ifName, keptFor: rec.ifName }, 'DEL of another attachment; the pod stays captured');
      return null;
    }
    const had = await deps.state.delete(req.containerId);
    metrics.requests.inc({ command: 'DEL', result: 'ok' });
    log.info({ containerId: req.containerId, forgot: had }, 'pod deleted');
    return null;
  }

  async function gc(req: CniRequest): Promise<null> {
    const valid = req.config['cni.dev/valid-attachments'];
    if (!Array.isArray(valid)) throw new CniError(CNI_ERR.invalidConfig, "GC needs 'cni.dev/valid-attachments' in the network configuration", '', 400);
    const keep = new Set(valid.map((a) => (a as { containerID?: unknown }).containerID).filter((x): x is string => typeof x === 'string'));
    const dropped = deps.state.all().filter((r) => !keep.has(r.containerId));
    for (const r of dropped) await deps.state.delete(r.containerId);
    metrics.requests.inc({ command: 'GC', result: 'ok' });
    log.info({ kept: keep.size, dropped: dropped.map((r) => r.containerId) }, 'garbage collected stale attachments');
    return null;
  }

  return async (req) => {
    metrics.inFlight.inc();
    const t0 = performance.now();
    try {
      switch (req.command) {
        case 'ADD': {
          const r = await add(req);
          metrics.addSeconds.observe({ result: 'ok' }, (performance.now() - t0) / 1000);
          return r;
        }
        case 'CHECK':
          return await check(req);
        case 'DEL':
          return await del(req);
        case 'GC':
          return await gc(req);
        case 'STATUS':
          if (!deps.isReady()) throw new CniError(CNI_ERR.pluginNotAvailable, 'meshcni agent is not ready', '', 503);
          return null;
      }
    } catch (e) {
      metrics.requests.inc({ command: req.command, result: 'error' });
      if (req.command === 'ADD') metrics.addSeconds.observe({ result: 'error' }, (performance.now() - t0) / 1000);
      log.error({ command: req.command, containerId: req.containerId, netns: req.netns, err: (e as Error).message }, 'CNI request failed');
      throw e;
    } finally {
      metrics.inFlight.dec();
    }
  };
}
