// Big pods (thousands of annotation list entries) are planned in a worker thread, one at a time:
// an ordinary pod's ADD issued while one is being planned is answered first, both are programmed
// correctly (read back from the kernel), a full queue says "try again later" naming the pod, and a
// worker that fails or dies fails only its own request. Ordering and outcomes only, no timing.
import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { Agent, makePlanner } from '../../src/agent/agent.js';
import { parseSettings } from '../../src/agent/config.js';
import { CniError } from '../../src/agent/cni.js';
import { buildPlan, captureDecision } from '../../src/agent/plan/build.js';
import { computeRulesDigest } from '../../src/agent/plan/types.js';
import { BIG_POD_LIST_ENTRIES, listEntries, PlanPool } from '../../src/agent/plan/pool.js';
import { DEFAULT_CAPTURE_CONFIG } from '../../src/capture/config.js';
import { readTables } from '../../src/nft/apply.js';
import { tableLabels } from '../../src/nft/model.js';
import { diffTables } from '../../src/nft/ruleset.js';
import { saveIn } from '../e2e/helpers.js';
import { NetnsPool, netnsPath } from '../helpers/netns.js';
import { AgentWorld, cni } from './helpers.js';

const N = 2000;
const ports = (i: number): string => Array.from({ length: N }, (_, k) => String(1 + ((k * 7 + i) % 60_000))).join(',');
const cidrs = (i: number): string =>
  Array.from({ length: N }, (_, k) => `10.${(k >> 8) & 255}.${k & 255}.${i % 250}/32`).join(',');
const bigAnnotations = (i: number): Record<string, string> => ({
  'traffic.sidecar.istio.io/excludeInboundPorts': ports(i),
  'traffic.sidecar.istio.io/excludeOutboundPorts': ports(i),
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': cidrs(i),
});
const podObject = (name: string, annotations: Record<string, string>): Record<string, unknown> => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: 'big', name, annotations },
  spec: {
    containers: [{ name: 'app' }, { name: 'istio-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }],
  },
});

const netnses = new NetnsPool('rpw');
const pools: PlanPool[] = [];
let world: AgentWorld | undefined;
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
  await world?.cleanup();
  world = undefined;
  netnses.cleanup();
});
function pool(opts: ConstructorParameters<typeof PlanPool>[1] = {}): PlanPool {
  const p = new PlanPool(DEFAULT_CAPTURE_CONFIG, opts);
  pools.push(p);
  return p;
}

describe('plan worker pool', () => {
  it('counts annotation list entries: ordinary pods stay in-thread, big ones go to the worker', () => {
    expect(listEntries(podObject('a', {}))).toBe(0);
    expect(listEntries(podObject('a', { 'traffic.sidecar.istio.io/excludeOutboundPorts': '1,2,3' }))).toBe(3);
    expect(listEntries(podObject('a', bigAnnotations(1)))).toBe(3 * N);
    expect(
      listEntries(
        podObject('a', { 'istio.io/reroute-virtual-interfaces': 'tap0,tap1', 'app.kubernetes.io/name': 'x,y,z' }),
      ),
    ).toBe(2);
    expect(3 * N).toBeGreaterThan(BIG_POD_LIST_ENTRIES);
  });

  it('decides a big pod for the pod index as planning would, without building its rules', () => {
    const decide = (annotations: Record<string, string>): boolean =>
      captureDecision(podObject('decide', annotations), DEFAULT_CAPTURE_CONFIG).capture;
    const plan = (annotations: Record<string, string>): boolean =>
      buildPlan(podObject('decide', annotations), DEFAULT_CAPTURE_CONFIG).capture;
    for (const annotations of [bigAnnotations(18), { ...bigAnnotations(18), 'sidecar.istio.io/inject': 'false' }])
      expect(decide(annotations)).toBe(plan(annotations));
    // A bad entry fails the ADD; the index says "captured", and the shim fails closed for it, as for a pod left out.
    const bad = { ...bigAnnotations(18), 'traffic.sidecar.istio.io/excludeInboundPorts': `${ports(18)},70000` };
    expect(() => plan(bad)).toThrow(/excludeInboundPorts.*70000/);
    expect(decide(bad)).toBe(true);
  });

  it('keeps a big plan in the worker: the agent thread gets digest, labels and summary; the kernel gets exactly the in-thread rules', async () => {
    const pod = podObject('same', bigAnnotations(2));
    const inThread = makePlanner(DEFAULT_CAPTURE_CONFIG)(pod);
    const p = pool();
    const fromWorker = await p.plan(pod, 'big/same');
    if (!inThread.capture || !fromWorker.capture || !('held' in fromWorker))
      throw new Error('both plans should capture, the worker one held');
    expect('tables' in fromWorker).toBe(false);
    expect(fromWorker.held.digest).toBe(computeRulesDigest(inThread.tables));
    expect(fromWorker.held.labels).toEqual(tableLabels(inThread.tables));
    expect(fromWorker.summary).toEqual(inThread.summary);
    const ns = netnses.create();
    expect((await fromWorker.held.diff(netnsPath(ns))).length).toBeGreaterThan(0); // nothing programmed yet
    await fromWorker.held.apply(netnsPath(ns));
    // The kernel is the judge: what the worker programmed is what the in-thread plan says, to the rule.
    expect(diffTables(inThread.tables, await readTables(netnsPath(ns)))).toEqual([]);
    expect(await fromWorker.held.diff(netnsPath(ns))).toEqual([]);
    expect(
      saveIn(ns)
        .split('\n')
        .filter((l) => /^-A ISTIO_OUTPUT -d 10\.\d+\.\d+\.2\/32 -j RETURN$/.test(l)),
    ).toHaveLength(N);
    expect(p.counts).toEqual({ plan: 1, apply: 1, diff: 2 });
    // The worker thread yields the CPU to the event loop (nice 10, as the kernel reports it).
    expect(p.workerPriority).toEqual({ nice: 10 });
    fromWorker.held.release();
  });

  it('replaces an idle worker whose heap stayed big, never while it holds a plan', async () => {
    const p = pool({ recycleHeapBytes: 1 }); // every heap is "big": recycling is due after each request
    const first = await p.plan(podObject('r1', bigAnnotations(12)), 'big/r1');
    await new Promise((r) => setImmediate(r));
    expect(p.recycled).toBe(0); // held: the worker must stay to apply it
    if (!first.capture || !('held' in first)) throw new Error('expected a held plan');
    const ns = netnses.create();
    await first.held.apply(netnsPath(ns));
    first.held.release();
    expect(p.recycled).toBe(1);
    const second = await p.plan(podObject('r2', bigAnnotations(13)), 'big/r2');
    expect(p.started).toBe(2);
    if (!second.capture || !('held' in second)) throw new Error('expected a held plan');
    expect(await second.held.diff(netnsPath(ns))).not.toEqual([]); // another pod's rules: they differ
    second.held.release();
  });

  it('fails with CNI code 11 naming the pod when the queue is full, and still plans the queued ones', async () => {
    const p = pool({ queueLimit: 1 });
    const first = p.plan(podObject('q1', bigAnnotations(3)), 'big/q1');
    const second = p.plan(podObject('q2', bigAnnotations(4)), 'big/q2');
    const third = p.plan(podObject('q3', bigAnnotations(5)), 'big/q3');
    const err = await third.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(11);
    expect((err as CniError).message).toMatch(/pod big\/q3: .*try again later/);
    expect((await first).capture).toBe(true);
    expect((await second).capture).toBe(true);
  });

  it('a planning error fails only its request; the same worker plans the next pod', async () => {
    const p = pool();
    const bad = { ...bigAnnotations(6), 'traffic.sidecar.istio.io/excludeOutboundPorts': `${ports(6)},99999` };
    const [r1, r2] = await Promise.allSettled([
      p.plan(podObject('bad', bad), 'big/bad'),
      p.plan(podObject('good', bigAnnotations(7)), 'big/good'),
    ]);
    expect(r1.status).toBe('rejected');
    expect(((r1 as PromiseRejectedResult).reason as Error).message).toMatch(/excludeOutboundPorts.*99999/);
    expect(r2.status).toBe('fulfilled');
    expect(p.started).toBe(1);
  });

  it('a worker that dies fails only the request it was planning; the pool starts a new worker', async () => {
    const p = pool({ testHooks: true });
    const [dead, next] = await Promise.allSettled([
      p.planAndCrash(podObject('c1', bigAnnotations(8)), 'big/c1'),
      p.plan(podObject('c2', bigAnnotations(9)), 'big/c2'),
    ]);
    expect(dead.status).toBe('rejected');
    const e = (dead as PromiseRejectedResult).reason as CniError;
    expect(e).toBeInstanceOf(CniError);
    expect(e.message).toMatch(/pod big\/c1: the plan worker exited with code 7/);
    expect(next.status).toBe('fulfilled');
    expect(p.started).toBe(2);
  });

  it('a plan held by a worker that died cannot be applied: its ADD fails naming the pod, nothing is programmed', async () => {
    const p = pool({ testHooks: true });
    const held = await p.plan(podObject('h1', bigAnnotations(14)), 'big/h1');
    await p.planAndCrash(podObject('h2', bigAnnotations(15)), 'big/h2').catch(() => undefined);
    if (!held.capture || !('held' in held)) throw new Error('expected a held plan');
    const ns = netnses.create();
    const err = await held.held.apply(netnsPath(ns)).then(
      () => null,
      (e: unknown) => e as CniError,
    );
    expect(err).toBeInstanceOf(CniError);
    expect(err!.message).toMatch(/pod big\/h1: the plan worker was restarted since this pod was planned/);
    expect(await readTables(netnsPath(ns))).toEqual([]);
  });
});

describe('the agent plans big pods off the event loop', () => {
  it('answers an ordinary ADD issued while a big pod is being planned first; both pods get their rules', async () => {
    world = new AgentWorld();
    world.addPod({ namespace: 'big', name: 'huge', annotations: bigAnnotations(10) });
    world.addPod({ namespace: 'big', name: 'plain' });
    const agent = await world.start();
    const bigNs = netnses.create();
    const plainNs = netnses.create();
    const done: string[] = [];
    const big = cni(world.socketPath, {
      command: 'ADD',
      containerId: 'cbig',
      netns: netnsPath(bigNs),
      pod: { namespace: 'big', name: 'huge' },
    }).then((r) => (done.push('big'), r));
    // The ordinary ADD goes out once the big pod is in the worker: the order then shows whether it waits.
    while (agent.planPool.pending === 0) await new Promise((r) => setImmediate(r));
    const plain = await cni(world.socketPath, {
      command: 'ADD',
      containerId: 'cplain',
      netns: netnsPath(plainNs),
      pod: { namespace: 'big', name: 'plain' },
    });
    done.push('plain');
    const bigAnswer = await big;
    expect(plain.status, plain.text).toBe(200);
    expect(bigAnswer.status, bigAnswer.text).toBe(200);
    expect(done).toEqual(['plain', 'big']);

    const plainRules = saveIn(plainNs);
    expect(plainRules).toMatch(/-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001/);
    expect(plainRules).not.toMatch(/-d 10\.0\.0\.10\/32/);
    const bigRules = saveIn(bigNs);
    expect(bigRules).toMatch(/-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001/);
    const excluded = bigRules.split('\n').filter((l) => /^-A ISTIO_OUTPUT -d 10\.\d+\.\d+\.10\/32 -j RETURN$/.test(l));
    expect(excluded).toHaveLength(N);
    expect(excluded).toContain('-A ISTIO_OUTPUT -d 10.7.207.10/32 -j RETURN'); // the last entry, k = 1999
  });

  it('a big pod with a bad entry fails its ADD naming it; an ordinary ADD beside it succeeds', async () => {
    world = new AgentWorld();
    world.addPod({
      namespace: 'big',
      name: 'broken',
      annotations: { ...bigAnnotations(11), 'traffic.sidecar.istio.io/excludeInboundPorts': `${ports(11)},70000` },
    });
    world.addPod({ namespace: 'big', name: 'plain' });
    await world.start();
    const [bad, ok] = await Promise.all([
      cni(world.socketPath, {
        command: 'ADD',
        containerId: 'cbroken',
        netns: netnsPath(netnses.create()),
        pod: { namespace: 'big', name: 'broken' },
      }),
      cni(world.socketPath, {
        command: 'ADD',
        containerId: 'cplain2',
        netns: netnsPath(netnses.create()),
        pod: { namespace: 'big', name: 'plain' },
      }),
    ]);
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/pod big\/broken: .*excludeInboundPorts.*70000/);
    expect(ok.status, ok.text).toBe(200);
  });

  it('CHECKs a big pod in the worker (plan and compare), answering an ordinary ADD meanwhile', async () => {
    world = new AgentWorld();
    world.addPod({ namespace: 'big', name: 'huge', annotations: bigAnnotations(16) });
    world.addPod({ namespace: 'big', name: 'plain' });
    const planPool = new PlanPool(DEFAULT_CAPTURE_CONFIG, { testHooks: true });
    const agent = new Agent(
      parseSettings(
        {
          podsDir: world.podsDir,
          socketPath: world.socketPath,
          stateDir: world.stateDir,
          metricsAddress: '',
          reconcileIntervalSeconds: 0,
        },
        'test',
      ),
      world.logs.logger,
      { planPool },
    );
    world.agent = agent;
    await agent.start();
    await agent.reconcile(); // the start-up pass (it plans the running big pod once, to see it is uncaptured)
    const base = { ...planPool.counts };
    const since = (): Record<string, number> => ({
      plan: planPool.counts.plan - base.plan,
      apply: planPool.counts.apply - base.apply,
      diff: planPool.counts.diff - base.diff,
    });
    const bigNs = netnsPath(netnses.create());
    const added = await cni(world.socketPath, {
      command: 'ADD',
      containerId: 'cchk',
      netns: bigNs,
      pod: { namespace: 'big', name: 'huge' },
    });
    expect(added.status, added.text).toBe(200);
    expect(since()).toEqual({ plan: 1, apply: 1, diff: 0 });

    // The worker is held: the big CHECK stays pending until it is let go.
    const resume = planPool.pauseWorker();
    const done: string[] = [];
    const check = cni(world.socketPath, {
      command: 'CHECK',
      containerId: 'cchk',
      netns: bigNs,
      pod: { namespace: 'big', name: 'huge' },
    }).then((r) => (done.push('check'), r));
    while (planPool.pending === 0) await new Promise((r) => setImmediate(r));
    const plain = await cni(world.socketPath, {
      command: 'ADD',
      containerId: 'cplain3',
      netns: netnsPath(netnses.create()),
      pod: { namespace: 'big', name: 'plain' },
    });
    done.push('plain');
    resume();
    const checked = await check;
    expect(plain.status, plain.text).toBe(200);
    expect(checked.status, checked.text).toBe(200);
    expect(done).toEqual(['plain', 'check']);
    expect(since()).toEqual({ plan: 2, apply: 1, diff: 1 });

    // Drift in the big pod: CHECK (in the worker) names it.
    spawnSync(
      'ip',
      [
        'netns',
        'exec',
        bigNs.split('/').pop()!,
        'iptables-nft',
        '-t',
        'nat',
        '-D',
        'ISTIO_OUTPUT',
        '-d',
        '10.7.207.16/32',
        '-j',
        'RETURN',
      ],
      { stdio: 'ignore' },
    );
    const drifted = await cni(world.socketPath, {
      command: 'CHECK',
      containerId: 'cchk',
      netns: bigNs,
      pod: { namespace: 'big', name: 'huge' },
    });
    expect(drifted.status).toBe(500);
    expect(drifted.text).toMatch(/pod big\/huge: \d+ rule difference\(s\)/);
    expect(drifted.text).toContain('0x0a07cf10'); // 10.7.207.16, the rule taken out
    expect(since().diff).toBe(2);
  });

  it('reconciles a big pod through the worker: drift found and repaired there, read back from the kernel', async () => {
    world = new AgentWorld();
    world.addPod({ namespace: 'big', name: 'huge', annotations: bigAnnotations(17) });
    const agent = await world.start({ repairPolicy: 'repair' });
    await agent.reconcile(); // the start-up pass
    const ns = netnses.create();
    const added = await cni(world.socketPath, {
      command: 'ADD',
      containerId: 'crec',
      netns: netnsPath(ns),
      pod: { namespace: 'big', name: 'huge' },
    });
    expect(added.status, added.text).toBe(200);
    const rule = ['-d', '10.7.207.17/32', '-j', 'RETURN'];
    spawnSync('ip', ['netns', 'exec', ns, 'iptables-nft', '-t', 'nat', '-D', 'ISTIO_OUTPUT', ...rule], {
      stdio: 'ignore',
    });
    expect(saveIn(ns)).not.toContain('-A ISTIO_OUTPUT -d 10.7.207.17/32 -j RETURN');
    const before = { ...agent.planPool.counts };
    const report = await agent.reconcile();
    expect(report.repaired).toEqual(['big/huge']);
    expect(agent.planPool.counts).toEqual({ plan: before.plan + 1, apply: before.apply + 1, diff: before.diff + 1 });
    expect(saveIn(ns)).toContain('-A ISTIO_OUTPUT -d 10.7.207.17/32 -j RETURN');
    const again = await agent.reconcile();
    expect(again.intact).toBe(1);

    // The same ADD again (a second chain): compared in the worker, found exact, nothing re-applied.
    const mid = { ...agent.planPool.counts };
    const readd = await cni(world.socketPath, {
      command: 'ADD',
      containerId: 'crec',
      netns: netnsPath(ns),
      pod: { namespace: 'big', name: 'huge' },
    });
    expect(readd.status, readd.text).toBe(200);
    expect(agent.planPool.counts).toEqual({ plan: mid.plan + 1, apply: mid.apply, diff: mid.diff + 1 });
    expect(
      world.logs.lines.some(
        (l) => l.msg === 'pod already captured; rules left as they are' && l.containerId === 'crec',
      ),
    ).toBe(true);
  });
});
