// Pods with 10,000-entry annotation lists (three of them: ~240 KB, under the API server's 256 KiB)
// against the in-process agent over its real socket and real namespaces. Reports the RSS each
// distinct such pod leaves behind (whole process, plan worker included, after GC, from a steady
// state reached with warm-up big pods), the time one takes, and an ordinary pod's ADD latency idle
// and for as long as four big pods are being handled, with the event loop's longest stall then.
// Targets: ≤ 2 MB RSS per big pod; ordinary p99 ≤ 2× idle p99.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { Agent } from '../src/agent/agent.js';
import { parseSettings } from '../src/agent/config.js';

const BIG_PODS = Number(process.env.BIG_PODS ?? 24);
/** Distinct big pods handled before the RSS baseline: allocator and heaps reach their steady size. */
const WARM_BIG_PODS = Number(process.env.WARM_BIG_PODS ?? 4);
const LOAD_BIG_PODS = 4;
const ORDINARY = Number(process.env.ORDINARY_ADDS ?? 200);
const layout = (process.argv.includes('--nft') ? 'nft' : 'iptables') as 'iptables' | 'nft';

const dir = mkdtempSync(join(tmpdir(), `mcni-bigbench-${process.pid}-`));
const podsDir = join(dir, 'pods');
const socketPath = join(dir, 'run', 'cni.sock');
mkdirSync(podsDir);
const netnses: string[] = [];
function netns(): string {
  const name = `mcni-big-${process.pid}-${netnses.length}`;
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}

function podYaml(name: string, annotations: Record<string, string>): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: 'bench', name, annotations },
    spec: {
      containers: [{ name: 'app' }, { name: 'istio-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }],
    },
    status: { phase: 'Pending' }, // not Running: the start-up reconcile pass leaves them alone
  });
}

function bigAnnotations(i: number): Record<string, string> {
  const ports = Array.from({ length: 10_000 }, (_, k) => String(1 + ((k * 7 + i) % 65_000))).join(',');
  const cidrs = Array.from({ length: 10_000 }, (_, k) => `10.${(k >> 8) & 255}.${k & 255}.${i % 250}/32`).join(',');
  return {
    'traffic.sidecar.istio.io/excludeInboundPorts': ports,
    'traffic.sidecar.istio.io/excludeOutboundPorts': ports,
    'traffic.sidecar.istio.io/excludeOutboundIPRanges': cidrs,
  };
}

function add(name: string, containerId: string, netnsPath: string): Promise<{ status: number; ms: number }> {
  const body = JSON.stringify({
    command: 'ADD',
    containerId,
    netns: netnsPath,
    ifName: 'eth0',
    args: `K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${name}`,
    path: '/opt/cni/bin',
    config: { cniVersion: '1.0.0', name: 'k8s', type: 'meshcni' },
  });
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path: '/v1/cni', method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const p = (xs: number[], q: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
/** After full GCs and a pause (a recycled worker's isolate is torn down asynchronously). */
async function memMb(): Promise<{ rss: number; heap: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc (npm run bench:big does)');
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(200);
  }
  const m = process.memoryUsage();
  return { rss: m.rss / 1e6, heap: (m.heapUsed + m.external) / 1e6 };
}

/** n ordinary ADDs one after another, and more while `until` has not settled. */
async function ordinaryRun(n: number, tag: string, slots: string[], until?: Promise<unknown>): Promise<number[]> {
  let settled = until === undefined;
  void until?.finally(() => (settled = true));
  const ms: number[] = [];
  for (let i = 0; i < n || !settled; i++) {
    const r = await add('plain', `${tag}${i}`, slots[i % slots.length]!);
    if (r.status !== 200) throw new Error(`ordinary ADD answered ${r.status}`);
    ms.push(r.ms);
  }
  return ms;
}

async function main(): Promise<void> {
  writeFileSync(join(podsDir, 'plain.yaml'), podYaml('plain', {}));
  const bigTotal = WARM_BIG_PODS + BIG_PODS + LOAD_BIG_PODS;
  for (let i = 0; i < bigTotal; i++)
    writeFileSync(join(podsDir, `big${i}.yaml`), podYaml(`big${i}`, bigAnnotations(i)));
  const settings = parseSettings(
    { podsDir, socketPath, stateDir: join(dir, 'state'), metricsAddress: '', reconcileIntervalSeconds: 0, layout },
    'bench',
  );
  const agent = new Agent(settings, pino({ level: 'warn' }));
  await agent.start();
  try {
    const slots = [netns(), netns(), netns(), netns()];
    await ordinaryRun(10, 'warm', slots);
    const idle = await ordinaryRun(ORDINARY, 'idle', slots);

    // Warm-up big pods, then the RSS slope over distinct big pods.
    for (let i = 0; i < WARM_BIG_PODS; i++) await add(`big${i}`, `bigwarm${i}`, netns());
    const before = await memMb();
    const bigMs: number[] = [];
    for (let i = WARM_BIG_PODS; i < WARM_BIG_PODS + BIG_PODS; i++) {
      const r = await add(`big${i}`, `big${i}`, netns());
      if (r.status !== 200) throw new Error(`big ADD answered ${r.status}`);
      bigMs.push(r.ms);
    }
    const after = await memMb();

    // Ordinary ADDs for as long as four big pods are being handled (planned, encoded, programmed).
    const loadNs = Array.from({ length: LOAD_BIG_PODS }, () => netns());
    const stalls = monitorEventLoopDelay({ resolution: 5 });
    stalls.enable();
    const bigs = Promise.all(loadNs.map((ns, k) => add(`big${WARM_BIG_PODS + BIG_PODS + k}`, `bigload${k}`, ns)));
    const loaded = await ordinaryRun(Math.max(20, ORDINARY / 3), 'load', slots, bigs);
    for (const r of await bigs) if (r.status !== 200) throw new Error(`big ADD under load answered ${r.status}`);
    stalls.disable();

    const rows = {
      layout,
      bigPods: BIG_PODS,
      rssBeforeMb: Number(before.rss.toFixed(0)),
      rssAfterMb: Number(after.rss.toFixed(0)),
      rssGrowthPerBigPodMb: Number(((after.rss - before.rss) / BIG_PODS).toFixed(2)),
      // What is really kept (live JS heap + buffers after a full GC); RSS also holds freed pages V8 keeps.
      retainedPerBigPodMb: Number(((after.heap - before.heap) / BIG_PODS).toFixed(2)),
      bigAddP50Ms: Number(p(bigMs, 0.5).toFixed(0)),
      ordinaryIdleP50Ms: Number(p(idle, 0.5).toFixed(2)),
      ordinaryIdleP99Ms: Number(p(idle, 0.99).toFixed(2)),
      ordinaryLoadedP50Ms: Number(p(loaded, 0.5).toFixed(2)),
      ordinaryLoadedP99Ms: Number(p(loaded, 0.99).toFixed(2)),
      ordinaryLoadedAdds: loaded.length,
      loopStallMaxMs: Number((stalls.max / 1e6).toFixed(1)),
      planWorkersStarted: agent.planPool.started,
      planWorkersRecycled: agent.planPool.recycled,
      planWorkerNice: JSON.stringify(agent.planPool.workerPriority ?? null),
    };
    console.table(rows);
    console.log(
      `targets: RSS per big pod ≤ 2 MB: ${rows.rssGrowthPerBigPodMb <= 2 ? 'met' : 'NOT met'}; ordinary p99 under load ≤ 2× idle: ${rows.ordinaryLoadedP99Ms <= 2 * rows.ordinaryIdleP99Ms ? 'met' : 'NOT met'}`,
    );
  } finally {
    await agent.stop();
  }
}

main()
  .catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const n of netnses) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
