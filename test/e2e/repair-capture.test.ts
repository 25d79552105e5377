// Pods that were running before meshcni: with repairPolicy capture the agent finds each one's netns
// by uid (cgroup path → /proc/<pid>/ns/net) and programs it with the ADD's one transaction. Real
// netns, real processes in real cgroup dirs; the kernel's ruleset is the judge. Root.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, applyPlan, makePlanner } from '../../src/agent/agent.js';
import { parseSettings } from '../../src/agent/config.js';
import { createMetrics } from '../../src/agent/metrics.js';
import { findPodNetns } from '../../src/agent/pod-netns.js';
import { DirPodSource } from '../../src/agent/pods/dir.js';
import { reconcileOnce } from '../../src/agent/reconcile.js';
import { PodStateStore } from '../../src/agent/state.js';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { readTables } from '../../src/nft/apply.js';
import { inNetns, NetnsPool } from '../helpers/netns.js';
import { World, nftRuleset, saveIn } from './helpers.js';
import { addPodWithUid, cgroupRoot, PodProcess } from './pod-process.js';

const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const DOCUMENTED = { 'traffic.sidecar.istio.io/excludeInboundPorts': '22', 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32' };
const silent = pino({ level: 'silent' });
const uid = (n: number): string => `${(process.pid % 1e8).toString(16).padStart(8, '0')}-aaaa-4bbb-8ccc-${String(n).padStart(12, '0')}`;

const worlds: World[] = [];
const agents: Agent[] = [];
const pods: PodProcess[] = [];
const pool = new NetnsPool('rep');
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop().catch(() => undefined);
  for (const p of pods.splice(0)) await p.remove();
  for (const w of worlds.splice(0)) await w.cleanup();
  pool.cleanup();
});

function oracle(): string {
  const ns = pool.create();
  inNetns(ns, 'iptables-nft-restore', [], fixture);
  return saveIn(ns);
}

async function runningPod(id: string, driver: 'cgroupfs' | 'systemd' = 'cgroupfs'): Promise<PodProcess> {
  const p = new PodProcess(id, driver);
  pods.push(p);
  await p.start();
  return p;
}

function world(): World {
  const w = new World();
  worlds.push(w);
  return w;
}

async function startAgent(w: World, policy = 'capture'): Promise<Agent> {
  const a = new Agent(parseSettings({ podsDir: w.podsDir, socketPath: w.socketPath, stateDir: w.stateDir, metricsAddress: '', reconcileIntervalSeconds: 0, repairPolicy: policy }, 'test'), silent);
  agents.push(a);
  await a.start();
  return a;
}

describe('repairPolicy capture', () => {
  it.each(['cgroupfs', 'systemd'] as const)('captures a sidecar pod that started before the agent, in place (%s cgroup driver)', async (driver) => {
    const w = world();
    const early = await runningPod(uid(1), driver);
    const plain = await runningPod(uid(2), driver);
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'early', annotations: DOCUMENTED }, uid(1));
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'plain', containers: ['app'] }, uid(2));
    const agent = await startAgent(w);
    const report = await agent.reconcile();
    expect(report.captured).toEqual(['shop/early']);
    expect(report.errors).toEqual([]);
    expect(saveIn(early.netns)).toBe(oracle());
    expect(nftRuleset(plain.netns)).toBe(''); // no sidecar: nothing to capture
    expect(await agent.metrics.registry.getSingleMetricAsString('meshcni_repairs_total')).toMatch(/result="captured"\} 1/);
    // Tracked from now on: the next pass finds it intact instead of capturing it again.
    const again = await agent.reconcile();
    expect(again.captured).toEqual([]);
    expect(again.intact).toBe(1);
  });

  it('never captures a pod in a namespace the agent excludes', async () => {
    const w = world();
    const sys = await runningPod(uid(8));
    addPodWithUid(w.podsDir, { namespace: 'istio-system', name: 'gateway', annotations: DOCUMENTED }, uid(8));
    const agent = await startAgent(w);
    const report = await agent.reconcile();
    expect(report.uncaptured).toEqual([]);
    expect(report.captured).toEqual([]);
    expect(nftRuleset(sys.netns)).toBe('');
  });

  it('only reports such a pod with repairPolicy report, and leaves its netns alone', async () => {
    const w = world();
    const early = await runningPod(uid(3));
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'early', annotations: DOCUMENTED }, uid(3));
    const agent = await startAgent(w, 'report');
    const report = await agent.reconcile();
    expect(report.uncaptured).toEqual(['shop/early']);
    expect(report.captured).toEqual([]);
    expect(nftRuleset(early.netns)).toBe('');
  });

  it('survives a pod whose netns vanishes mid-repair and still captures the others', async () => {
    const w = world();
    const doomed = await runningPod(uid(4));
    const other = await runningPod(uid(5));
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'doomed', annotations: DOCUMENTED }, uid(4));
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'other', annotations: DOCUMENTED }, uid(5));
    const source = new DirPodSource(w.podsDir, silent);
    await source.start();
    const state = new PodStateStore(w.stateDir);
    state.load();
    const report = await reconcileOnce({
      state,
      pods: source,
      planPod: makePlanner(parseCaptureConfig({})),
      readTables,
      // The pod dies between finding its netns and the commit: the kernel call must fail cleanly.
      applyPlan: async (netns, plan) => {
        if (netns === `/proc/${doomed.pid}/ns/net`) await doomed.kill();
        return applyPlan(netns, plan as never);
      },
      policy: 'capture',
      metrics: createMetrics(),
      log: silent,
    });
    await source.stop();
    expect(report.captured).toEqual(['shop/other']);
    expect(report.errors).toHaveLength(1);
    expect(report.errors[0]).toMatch(/^shop\/doomed: /);
    expect(saveIn(other.netns)).toBe(oracle());
    expect(state.all().map((r) => r.name)).toEqual(['other']);
  });
});

describe('findPodNetns', () => {
  it('refuses a pod process that lives in the host network namespace', async () => {
    const id = uid(6);
    const p = new PodProcess(id);
    pods.push(p);
    // Like start(), but the process stays in the host netns.
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const top = `${cgroupRoot()}/mcni-test-${process.pid}-host`;
    mkdirSync(top);
    p.dirs.unshift(top);
    mkdirSync(`${top}/pod${id}`);
    p.dirs.unshift(`${top}/pod${id}`);
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    try {
      writeFileSync(`${top}/pod${id}/cgroup.procs`, String(child.pid));
      const found = findPodNetns([id]).get(id)!;
      expect(found).toEqual({ problem: expect.stringMatching(/host network namespace; refusing/) });
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('names a uid that no process belongs to, and rejects one that is not a uid', () => {
    const found = findPodNetns([uid(7), '../etc']);
    expect(found.get(uid(7))).toEqual({ problem: expect.stringMatching(/no process in a cgroup of pod uid/) });
    expect(found.get('../etc')).toEqual({ problem: expect.stringMatching(/is not a Kubernetes uid/) });
  });
});
