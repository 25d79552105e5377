// Pods that were running before meshcni: with repairPolicy capture the agent finds each one's netns
// by uid (cgroup path → /proc/<pid>/ns/net) and programs it with the ADD's one transaction. Real
// netns, real processes in real cgroup dirs; the kernel's ruleset is the judge. Root.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readlinkSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, applyPlan, makePlanner } from '../../src/agent/agent.js';
import { createMetrics } from '../../src/agent/metrics.js';
import { findPodNetns, releaseNetns } from '../../src/agent/repair/netns-finder.js';
import { DirPodSource } from '../../src/agent/pods/dir.js';
import { reconcileOnce } from '../../src/agent/repair/reconcile.js';
import { PodStateStore } from '../../src/agent/state/records.js';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { readTables } from '../../src/nft/apply.js';
import { netnsIdentity } from '../../src/kernel/index.js';
import { inNetns, netnsPath, NetnsPool } from '../helpers/netns.js';
import { until } from '../helpers/wait.js';
import { World, nftRuleset, saveIn } from './helpers.js';
import { addPodWithUid, cgroupRoot, PodProcess } from './pod-process.js';

const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const DOCUMENTED = {
  'traffic.sidecar.istio.io/excludeInboundPorts': '22',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
};
const silent = pino({ level: 'silent' });
const uid = (n: number): string =>
  `${(process.pid % 1e8).toString(16).padStart(8, '0')}-aaaa-4bbb-8ccc-${String(n).padStart(12, '0')}`;

const worlds: World[] = [];
const agents: Agent[] = [];
const pods: PodProcess[] = [];
const pool = new NetnsPool('rep');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
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
  const a = new Agent(w.agentSettings({ repairPolicy: policy }), silent);
  agents.push(a);
  await a.start();
  return a;
}

describe('repairPolicy capture', () => {
  it.each(['cgroupfs', 'systemd'] as const)(
    'captures a sidecar pod that started before the agent, in place (%s cgroup driver)',
    async (driver) => {
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
      expect(await agent.metrics.registry.getSingleMetricAsString('meshcni_repairs_total')).toMatch(
        /result="captured"\} 1/,
      );
      // Tracked from now on: the next pass finds it intact instead of capturing it again.
      const again = await agent.reconcile();
      expect(again.captured).toEqual([]);
      expect(again.intact).toBe(1);
    },
  );

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

  it('survives a pod that dies mid-repair: the others are captured and the next pass forgets it', async () => {
    const w = world();
    const doomed = await runningPod(uid(4));
    const other = await runningPod(uid(5));
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'doomed', annotations: DOCUMENTED }, uid(4));
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'other', annotations: DOCUMENTED }, uid(5));
    const source = new DirPodSource(w.podsDir, silent);
    await source.start();
    const state = new PodStateStore(w.stateDir);
    state.load();
    const doomedIno = netnsIdentity(netnsPath(doomed.netns)).ino;
    const deps = {
      state,
      pods: source,
      planPod: makePlanner(parseCaptureConfig({})),
      readTables,
      // The pod dies between proving its netns and the commit: the held fd keeps that netns (and
      // only that one) alive, so the commit lands in the dying pod's own netns and nowhere else.
      applyPlan: async (netns: string, plan: unknown) => {
        if (netnsIdentity(netns).ino === doomedIno) await doomed.kill();
        return applyPlan(netns, plan as never);
      },
      policy: 'capture' as const,
      metrics: createMetrics(),
      log: silent,
    };
    const report = await reconcileOnce(deps);
    expect(report.captured.sort()).toEqual(['shop/doomed', 'shop/other']);
    expect(saveIn(other.netns)).toBe(oracle());
    const next = await reconcileOnce(deps);
    await source.stop();
    expect(next.forgotten).toEqual(['shop/doomed']);
    expect(next.intact).toBe(1);
    expect(state.all().map((r) => r.name)).toEqual(['other']);
  });
});

/** Spawns a process (argv) and registers its kill; resolves once it runs. */
async function spawned(argv: string[]): Promise<ChildProcess> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return child;
}

/** A cgroup dir of its own named for the pod (what a user with a delegated cgroup can make). */
function plantCgroup(podUid: string, tag: string): string {
  const top = join(cgroupRoot(), `mcni-test-${process.pid}-${tag}`);
  mkdirSync(top);
  cleanups.push(async () => rmdirSync(top));
  mkdirSync(join(top, `pod${podUid}`));
  cleanups.push(async () => rmdirSync(join(top, `pod${podUid}`)));
  return join(top, `pod${podUid}`);
}

/** The ruleset of the netns a process is in (nsenter: the test's own reading, not meshcni's). */
const rulesetOf = (pid: number): string =>
  execFileSync('nsenter', ['-t', String(pid), '-n', 'nft', 'list', 'ruleset'], { encoding: 'utf8' }).trim();

/**
 * A non-root user's process (nobody) in its own user + network namespace, moved into a cgroup named
 * for the pod: what a local user with a delegated cgroup can plant.
 */
async function plantUserNetns(podUid: string, name: string): Promise<ChildProcess> {
  const planted = await spawned([
    'setpriv',
    '--reuid',
    '65534',
    '--regid',
    '65534',
    '--clear-groups',
    'unshare',
    '-U',
    '-r',
    '-n',
    'sleep',
    '600',
  ]);
  const dir = plantCgroup(podUid, name);
  await until(() => runs(planted.pid, '/sleep'));
  writeFileSync(join(dir, 'cgroup.procs'), String(planted.pid));
  return planted;
}

describe('capture in place cannot be steered', () => {
  it('refuses a planted process in a user-owned netns that sorts first, and captures the real pod', async () => {
    const w = world();
    const id = uid(10);
    // A non-root user (nobody) with its own user + network namespace, in a cgroup named for the pod,
    // started first so its pid sorts before the pod's.
    const planted = await plantUserNetns(id, 'planted');
    const real = await runningPod(id);
    expect(planted.pid!).toBeLessThan(real.pid!);
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'early', annotations: DOCUMENTED }, id);
    const agent = await startAgent(w);
    const report = await agent.reconcile();
    expect(report.captured).toEqual(['shop/early']);
    expect(saveIn(real.netns)).toBe(oracle());
    expect(rulesetOf(planted.pid!)).toBe('');
    const rec = agent.state.all().find((r) => r.name === 'early')!;
    expect(rec.netns).toBe('');
    const ident = netnsIdentity(netnsPath(real.netns));
    expect(rec.netnsId).toBe(`${ident.dev}:${ident.ino}`);
  });

  it('names the owner of a planted netns when it is the only candidate, and programs nothing', async () => {
    const id = uid(11);
    await plantUserNetns(id, 'alone');
    const found = findPodNetns([{ uid: id }]).get(id)!;
    expect(found).toEqual({ problem: expect.stringMatching(/is owned by user namespace .*refusing to program it/) });
  });

  it('refuses a netns that does not hold the pod IP the API reports', async () => {
    const real = await runningPod(uid(12));
    inNetns(real.netns, 'ip', ['addr', 'add', '10.77.0.5/32', 'dev', 'lo']);
    inNetns(real.netns, 'ip', ['link', 'set', 'lo', 'up']);
    const wrong = findPodNetns([{ uid: uid(12), ips: ['10.77.0.6'] }]).get(uid(12))!;
    expect(wrong).toEqual({ problem: expect.stringMatching(/holds none of the pod's IPs 10\.77\.0\.6/) });
    const right = findPodNetns([{ uid: uid(12), ips: ['10.77.0.5'] }]).get(uid(12))!;
    releaseNetns(right);
    expect(right).toMatchObject({ pid: real.pid });
  });

  it('never programs another netns after the pod process exits and its pid is reused', async () => {
    const w = world();
    const id = uid(13);
    const pod = await runningPod(id);
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'early', annotations: DOCUMENTED }, id);
    const agent = await startAgent(w);
    expect((await agent.reconcile()).captured).toEqual(['shop/early']);
    const pid = pod.pid!;
    await pod.kill();
    // An unrelated process in a netns of its own takes the same pid (ns_last_pid steers the next fork).
    const other = pool.create();
    let reused: ChildProcess | undefined;
    for (let i = 0; i < 50 && !reused; i++) {
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
      const c = await spawned(['ip', 'netns', 'exec', other, 'sleep', '600']);
      if (c.pid === pid) reused = c;
      else c.kill('SIGKILL');
    }
    expect(reused, 'could not make the kernel reuse the pid').toBeDefined();
    await until(() => runs(pid, '/sleep'));
    const report = await agent.reconcile();
    expect(report.forgotten).toEqual(['shop/early']);
    expect(report.repaired).toEqual([]);
    expect(nftRuleset(other)).toBe('');
  });
});

/** Whether `pid` runs a program whose path ends in `suffix` (false while it is still being exec'd or gone). */
function runs(pid: number | undefined, suffix: string): boolean {
  try {
    return readlinkSync(`/proc/${pid}/exe`).endsWith(suffix);
  } catch {
    return false;
  }
}

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
      const found = findPodNetns([{ uid: id }]).get(id)!;
      expect(found).toEqual({ problem: expect.stringMatching(/host network namespace; refusing/) });
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('names a uid that no process belongs to, and rejects one that is not a uid', () => {
    const found = findPodNetns([{ uid: uid(7) }, { uid: '../etc' }]);
    expect(found.get(uid(7))).toEqual({ problem: expect.stringMatching(/no process in a cgroup of pod uid/) });
    expect(found.get('../etc')).toEqual({ problem: expect.stringMatching(/is not a Kubernetes uid/) });
  });
});
