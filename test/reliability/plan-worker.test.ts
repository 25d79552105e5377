// Big pods (thousands of annotation list entries) are planned in a worker thread, one at a time:
// an ordinary pod's ADD issued while one is being planned is answered first, both are programmed
// correctly (read back from the kernel), a full queue says "try again later" naming the pod, and a
// worker that fails or dies fails only its own request. Ordering and outcomes only, no timing.
import { afterEach, describe, expect, it } from 'vitest';
import { makePlanner } from '../../src/agent/agent.js';
import { CniError } from '../../src/agent/cni.js';
import { rulesDigest } from '../../src/agent/handler.js';
import { computeRulesDigest } from '../../src/agent/plan-build.js';
import { BIG_POD_LIST_ENTRIES, listEntries, PlanPool } from '../../src/agent/plan-pool.js';
import { DEFAULT_CAPTURE_CONFIG } from '../../src/capture/config.js';
import { saveIn } from '../e2e/helpers.js';
import { NetnsPool, netnsPath } from '../helpers/netns.js';
import { AgentWorld, cni } from './helpers.js';

const N = 2000;
const ports = (i: number): string => Array.from({ length: N }, (_, k) => String(1 + ((k * 7 + i) % 60_000))).join(',');
const cidrs = (i: number): string => Array.from({ length: N }, (_, k) => `10.${(k >> 8) & 255}.${k & 255}.${i % 250}/32`).join(',');
const bigAnnotations = (i: number): Record<string, string> => ({
  'traffic.sidecar.istio.io/excludeInboundPorts': ports(i),
  'traffic.sidecar.istio.io/excludeOutboundPorts': ports(i),
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': cidrs(i),
});
const podObject = (name: string, annotations: Record<string, string>): Record<string, unknown> => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: 'big', name, annotations },
  spec: { containers: [{ name: 'app' }, { name: 'istio-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }] },
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
    expect(listEntries(podObject('a', { 'istio.io/reroute-virtual-interfaces': 'tap0,tap1', 'app.kubernetes.io/name': 'x,y,z' }))).toBe(2);
    expect(3 * N).toBeGreaterThan(BIG_POD_LIST_ENTRIES);
  });

  it('plans in the worker exactly what the in-thread planner plans (tables survive the structured clone)', async () => {
    const pod = podObject('same', bigAnnotations(2));
    const inThread = makePlanner(DEFAULT_CAPTURE_CONFIG)(pod);
    const fromWorker = await pool().plan(pod, 'big/same');
    expect(fromWorker).toEqual(inThread);
    // The digest came from the worker (seeded for this ruleset object); it must be the in-thread one.
    expect(fromWorker.capture && inThread.capture).toBe(true);
    if (fromWorker.capture && inThread.capture) expect(rulesDigest(fromWorker.tables)).toBe(computeRulesDigest(inThread.tables));
  });

  it('fails with CNI code 11 naming the pod when the queue is full, and still plans the queued ones', async () => {
    const p = pool({ queueLimit: 1 });
    const first = p.plan(podObject('q1', bigAnnotations(3)), 'big/q1');
    const second = p.plan(podObject('q2', bigAnnotations(4)), 'big/q2');
    const third = p.plan(podObject('q3', bigAnnotations(5)), 'big/q3');
    const err = await third.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(11);
    expect((err as CniError).message).toMatch(/pod big\/q3: .*try again later/);
    expect((await first).capture).toBe(true);
    expect((await second).capture).toBe(true);
  });

  it('a planning error fails only its request; the same worker plans the next pod', async () => {
    const p = pool();
    const bad = { ...bigAnnotations(6), 'traffic.sidecar.istio.io/excludeOutboundPorts': `${ports(6)},99999` };
    const [r1, r2] = await Promise.allSettled([p.plan(podObject('bad', bad), 'big/bad'), p.plan(podObject('good', bigAnnotations(7)), 'big/good')]);
    expect(r1.status).toBe('rejected');
    expect(((r1 as PromiseRejectedResult).reason as Error).message).toMatch(/excludeOutboundPorts.*99999/);
    expect(r2.status).toBe('fulfilled');
    expect(p.started).toBe(1);
  });

  it('a worker that dies fails only the request it was planning; the pool starts a new worker', async () => {
    const p = pool({ testHooks: true });
    const [dead, next] = await Promise.allSettled([p.planAndCrash(podObject('c1', bigAnnotations(8)), 'big/c1'), p.plan(podObject('c2', bigAnnotations(9)), 'big/c2')]);
    expect(dead.status).toBe('rejected');
    const e = (dead as PromiseRejectedResult).reason as CniError;
    expect(e).toBeInstanceOf(CniError);
    expect(e.message).toMatch(/pod big\/c1: the plan worker exited with code 7/);
    expect(next.status).toBe('fulfilled');
    expect(p.started).toBe(2);
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
    const big = cni(world.socketPath, { command: 'ADD', containerId: 'cbig', netns: netnsPath(bigNs), pod: { namespace: 'big', name: 'huge' } }).then((r) => (done.push('big'), r));
    // The ordinary ADD goes out once the big pod is in the worker: the order then shows whether it waits.
    while (agent.planPool.pending === 0) await new Promise((r) => setImmediate(r));
    const plain = await cni(world.socketPath, { command: 'ADD', containerId: 'cplain', netns: netnsPath(plainNs), pod: { namespace: 'big', name: 'plain' } });
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
    world.addPod({ namespace: 'big', name: 'broken', annotations: { ...bigAnnotations(11), 'traffic.sidecar.istio.io/excludeInboundPorts': `${ports(11)},70000` } });
    world.addPod({ namespace: 'big', name: 'plain' });
    await world.start();
    const [bad, ok] = await Promise.all([
      cni(world.socketPath, { command: 'ADD', containerId: 'cbroken', netns: netnsPath(netnses.create()), pod: { namespace: 'big', name: 'broken' } }),
      cni(world.socketPath, { command: 'ADD', containerId: 'cplain2', netns: netnsPath(netnses.create()), pod: { namespace: 'big', name: 'plain' } }),
    ]);
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/pod big\/broken: .*excludeInboundPorts.*70000/);
    expect(ok.status, ok.text).toBe(200);
  });
});
