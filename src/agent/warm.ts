// Warm start: run the ADD hot path once before the agent reports ready, so the first real pod does not
// pay for loading the addon, compiling the planner and encoder, and the first netlink transaction.
// The apply goes into a throwaway netns owned by a short-lived `unshare --net` child: never a pod's,
// never the host's, and gone with the child.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { LocalPlan, PodPlan } from './handler.js';
import { rulesDigest } from './handler.js';

type CapturePlan = Extract<PodPlan, { capture: true }>;

export interface WarmDeps {
  planPod: (pod: Record<string, unknown>) => LocalPlan;
  applyPlan: (netns: string, plan: CapturePlan) => Promise<unknown>;
  readTables: (netns: string) => Promise<unknown>;
  log: Logger;
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
    steps.push('plan');
    const ns = await throwawayNetns();
    if (ns) {
      try {
        await deps.applyPlan(ns.path, plan);
        await deps.readTables(ns.path);
        steps.push('apply', 'read');
      } finally {
        await ns.done();
      }
    }
    deps.log.info({ steps, ms: performance.now() - t0 }, ns ? 'hot path warmed' : 'hot path warmed without an apply (no unshare)');
  } catch (e) {
    deps.log.warn({ steps, err: (e as Error).message, ms: performance.now() - t0 }, 'warm start failed; the first pod will be slower');
  }
}
