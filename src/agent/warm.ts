// Warm start: run the ADD hot path before the agent reports ready, so the first real pod does not pay
// for loading the addon, compiling (and tiering up) the planner, digest and encoder, and the first
// netlink transaction. Two parts: plans of a few dozen varied pods (code that ran once is still
// interpreted: V8 optimises what runs often), then one ADD and one DEL through the real CNI handler
// (validation, lock, record, apply, metrics, log, result) into a throwaway netns owned by a
// short-lived `unshare --net` child: never a pod's, never the host's, and gone with the child. The
// handler runs with its own record directory, metrics registry and a silent logger, so nothing of
// it is visible to operators.
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { createBatch } from '../nft/apply.js';
import { removeTables } from '../nft/apply.js';
import type { TableContents } from '../nft/model.js';
import { parseCniRequest } from './cni.js';
import { createCniHandler } from './endpoint/handler.js';
import { rulesDigest, type CapturePlan, type LocalPlan } from './plan/types.js';
import { createMetrics } from './metrics.js';
import type { PodSource } from './pods/source.js';
import { PodStateStore } from './state/records.js';

export interface WarmDeps {
  planPod: (pod: Record<string, unknown>) => LocalPlan;
  applyPlan: (netns: string, plan: CapturePlan) => Promise<unknown>;
  readTables: (netns: string) => Promise<TableContents[]>;
  log: Logger;
  /** The agent's state directory: the warm-up's own record goes in a subdirectory of it, removed after. */
  stateDir?: string;
}

/**
 * Plans (with digest and encoded batch) for this many distinct pod shapes: about 100 ms at start.
 * bench:first-add measured first/steady 4.1× with 48, 3.6× with 96 and 6.6× with 400 (more garbage,
 * which a collection during the first real ADD would explain; not traced). Their plans sit in the
 * plan cache (bounded as always) until real pods push them out, least recently used first.
 */
const JIT_PODS = 96;

/** The representative pod with the annotations meshed pods carry most, varied by `k`. */
function variedPod(k: number): Record<string, unknown> {
  const annotations: Record<string, string> = [
    { 'traffic.sidecar.istio.io/excludeInboundPorts': `${15100 + k}` },
    { 'traffic.sidecar.istio.io/excludeOutboundIPRanges': `10.${k}.0.0/16,192.168.${k}.1/32` },
    {
      'traffic.sidecar.istio.io/excludeOutboundPorts': `${20000 + k},${21000 + k}`,
      'traffic.sidecar.istio.io/includeInboundPorts': '*',
    },
    {
      'traffic.sidecar.istio.io/includeOutboundIPRanges': `10.${k}.0.0/16`,
      'traffic.sidecar.istio.io/excludeInboundPorts': '22',
    },
  ][k % 4]!;
  const meta = REPRESENTATIVE_POD.metadata as Record<string, unknown>;
  return { ...REPRESENTATIVE_POD, metadata: { ...meta, name: `${meta.name as string}-${k}`, annotations } };
}

/** One ADD and one DEL of the representative pod through a CNI handler of its own. */
async function handlerRoundTrip(deps: WarmDeps, netns: string, stateDir: string): Promise<void> {
  const dir = join(stateDir, 'warm-start');
  rmSync(dir, { recursive: true, force: true });
  try {
    const state = new PodStateStore(dir);
    state.load();
    const pods: PodSource = {
      lookup: async () => REPRESENTATIVE_POD,
      list: async () => [REPRESENTATIVE_POD],
      start: async () => undefined,
      stop: async () => undefined,
      ready: () => true,
    };
    const handler = createCniHandler({
      excludeNamespaces: [],
      pods,
      planPod: deps.planPod,
      applyPlan: deps.applyPlan,
      readTables: deps.readTables,
      removeTables,
      state,
      metrics: createMetrics('warm-start', { processDefaults: false }),
      log: pino({ level: deps.log.level }, pino.destination({ dest: '/dev/null', sync: true })),
      isReady: () => true,
    });
    const meta = REPRESENTATIVE_POD.metadata as { namespace: string; name: string };
    for (const command of ['ADD', 'DEL']) {
      const body = JSON.stringify({
        command,
        containerId: 'meshcni-warm-start',
        netns,
        ifName: 'eth0',
        args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${meta.namespace};K8S_POD_NAME=${meta.name}`,
        path: '/opt/cni/bin',
        config: {
          cniVersion: '1.0.0',
          name: 'warm-start',
          type: 'meshcni',
          prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: netns }], ips: [] },
        },
      });
      await handler(parseCniRequest(JSON.parse(body)));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A pod shaped like most meshed pods: one app container, the istio-proxy sidecar, no annotations. */
export const REPRESENTATIVE_POD: Record<string, unknown> = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'meshcni-warm-start', namespace: 'meshcni-warm-start' },
  spec: {
    containers: [
      { name: 'app', image: 'example/app' },
      { name: 'istio-proxy', image: 'istio/proxyv2', securityContext: { runAsUser: 1337, runAsGroup: 1337 } },
    ],
  },
  status: { phase: 'Running' },
};

/** A netns that lives as long as a sleeping `unshare --net` child; null when that cannot be made. */
async function throwawayNetns(): Promise<{ path: string; done: () => Promise<void> } | null> {
  const child = spawn('unshare', ['--net', 'sleep', '30'], { stdio: 'ignore' });
  const spawned = await new Promise<boolean>((resolve) => {
    child.once('spawn', () => resolve(true));
    child.once('error', () => resolve(false));
  });
  if (!spawned || !child.pid) return null;
  const done = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  // unshare execs sleep once the new netns exists: wait for the exe to change (bounded).
  const path = `/proc/${child.pid}/ns/net`;
  for (let i = 0; i < 200 && existsSync(path); i++) {
    const exe = await import('node:fs/promises').then((fs) => fs.readlink(`/proc/${child.pid}/exe`).catch(() => ''));
    if (exe.endsWith('/sleep')) return { path, done };
    await new Promise((r) => setTimeout(r, 5));
  }
  await done();
  return null;
}

/** Never throws: a failed warm-up only costs the first pod its speed, and is logged. */
export async function warmHotPath(deps: WarmDeps): Promise<void> {
  const t0 = performance.now();
  const steps: string[] = [];
  try {
    const plan = deps.planPod(REPRESENTATIVE_POD);
    if (!plan.capture) throw new Error(`the representative pod was not captured: ${plan.reason}`);
    rulesDigest(plan.tables);
    for (let k = 0; k < JIT_PODS; k++) {
      const p = deps.planPod(variedPod(k));
      if (!p.capture) continue;
      rulesDigest(p.tables);
      createBatch(p.tables);
    }
    steps.push('plan');
    const ns = await throwawayNetns();
    if (ns) {
      try {
        if (deps.stateDir) {
          await handlerRoundTrip(deps, ns.path, deps.stateDir);
          steps.push('add', 'del');
        } else {
          await deps.applyPlan(ns.path, plan);
          steps.push('apply');
        }
        await deps.readTables(ns.path);
        steps.push('read');
      } finally {
        await ns.done();
      }
    }
    deps.log.info(
      { steps, ms: performance.now() - t0 },
      ns ? 'hot path warmed' : 'hot path warmed without an apply (no unshare)',
    );
  } catch (e) {
    deps.log.warn(
      { steps, err: (e as Error).message, ms: performance.now() - t0 },
      'warm start failed; the first pod will be slower',
    );
  }
}
