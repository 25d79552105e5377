// The benchmark suite: pod-startup latency against the iptables way (interleaved, one run), churn
// against one agent, and rule-list scale for both layouts. Prints tables, writes
// bench/results/latest.json and an SVG of the latency distributions, and refreshes the
// results tables in bench/README.md. Never fails on timing. `--quick` keeps it under two minutes (CI).
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { applyTables, createBatch } from '../src/nft/apply.js';
import { Driver, type JobResult } from './driver.js';
import { phases } from './phases.js';
import { loadAverage, updateBenchReadme } from './readme.js';
import { rulesForBench, scalePlan, writePod } from './rules.js';
import {
  benchTempDir,
  buildNoop,
  cpuMs,
  systemBusyMs,
  NetnsGroup,
  openFds,
  PodNetns,
  ROOT,
  rssKiB,
  SHIM,
  shimAdd,
  startAgent,
  stopAgent,
} from './harness.js';
import { latencySvg } from './plot.js';
import { nowMs, summarize, table, type Summary } from './stats.js';

const quick = process.argv.includes('--quick');
const ITER = Number(process.env.BENCH_ITERATIONS ?? (quick ? 40 : 200));
const CHURN_LEVELS = quick ? [1, 8, 32] : [1, 8, 32, 128];
const CHURN_PODS = Number(process.env.BENCH_CHURN_PODS ?? (quick ? 200 : 1000));
const SOAK_PODS = Number(process.env.BENCH_SOAK_PODS ?? (quick ? 0 : 10_000));
const SCALE_SIZES = quick ? [0, 10, 100] : [0, 10, 100, 1000];
const SCALE_ITER = Number(process.env.BENCH_SCALE_ITERATIONS ?? (quick ? 10 : 40));

type PathName =
  | 'exec_floor'
  | 'meshcni_e2e'
  | 'meshcni_apply'
  | 'kernel_floor'
  | 'istio_cni_way'
  | 'iptables_nft_restore'
  | 'iptables_legacy_restore'
  | 'nft_file';
const PATHS: PathName[] = [
  'exec_floor',
  'meshcni_e2e',
  'meshcni_apply',
  'kernel_floor',
  'istio_cni_way',
  'iptables_nft_restore',
  'iptables_legacy_restore',
  'nft_file',
];

const which = (cmd: string): string => execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();

/** The shim's CNI environment as strings, with its stdin written to a file for the driver. */
function shimJob(
  dir: string,
  socketPath: string,
  netnsPath: string,
  pod: { namespace: string; name: string },
  containerId: string,
  command = 'ADD',
) {
  const { env, input } = shimAdd(socketPath, netnsPath, pod, containerId);
  const stdin = join(dir, `${containerId}.json`);
  writeFileSync(stdin, input);
  return { env: { ...(env as Record<string, string>), CNI_COMMAND: command }, stdin };
}

/**
 * Every path into its own fresh netns, interleaved and rotated each iteration. Execs are timed by
 * the C driver (posix_spawn → waitpid, as containerd execs plug-ins); meshcni_apply is the agent's
 * commit call (addon, thread pool) from this Node process; kernel_floor replays the very bytes
 * meshcni_apply sends, from the resident C driver (setns, socket, send, drain).
 */
async function latency(dir: string, driver: Driver): Promise<Record<PathName, number[]>> {
  const rules = rulesForBench();
  writePod(join(dir, 'pods'), 'bench', 'web', {});
  const agent = await startAgent(dir);
  const noop = buildNoop();
  const jobsDir = join(dir, 'jobs');
  mkdirSync(jobsDir, { recursive: true });
  const files = {
    v4: join(dir, 'v4.rules'),
    v6: join(dir, 'v6.rules'),
    nft: join(dir, 'rules.nft'),
    batch: join(dir, 'batch.bin'),
    version: join(dir, 'version.json'),
  };
  writeFileSync(files.v4, rules.v4);
  writeFileSync(files.v6, rules.v6);
  writeFileSync(files.nft, rules.nft);
  writeFileSync(files.batch, createBatch(rules.tables).buffer);
  writeFileSync(files.version, '{"cniVersion":"1.0.0"}');
  const bin = { nsenter: which('nsenter'), loopback: '/usr/lib/cni/loopback' };
  const pathEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const inNs = (n: PodNetns, ...cmd: string[]) => [bin.nsenter, `--net=${n.path}`, ...cmd];
  const samples = Object.fromEntries(PATHS.map((p) => [p, [] as number[]])) as Record<PathName, number[]>;
  const group = new NetnsGroup();
  const CHUNK = 25;
  let made: PodNetns[] = [];
  try {
    for (let i = 0; i < ITER; i++) {
      // Fresh namespaces for every path that programs one, made in bulk ahead of a stretch of
      // iterations (NetnsGroup.pods) and deleted after the section.
      if (i % CHUNK === 0) made = group.pods('lat', i * PATHS.length, Math.min(CHUNK, ITER - i) * PATHS.length);
      const ns = Object.fromEntries(PATHS.map((p, k) => [p, made[(i % CHUNK) * PATHS.length + k]!])) as Record<
        PathName,
        PodNetns
      >;
      // Rotate the order so no path always runs first (cache warmth, kernel work queues). The
      // in-process apply takes its turn in the rotation like the rest: the driver runs what is
      // queued before it, then the apply is timed, then the driver runs the rest.
      const order = PATHS.map((_, k) => PATHS[(k + i) % PATHS.length]!);
      const results = new Map<string, JobResult>();
      const runQueued = async () => {
        for (const [id, r] of (await driver.run(1)).results) {
          if (r.status !== 0) throw new Error(`bench job ${id} failed with status ${r.status}`);
          results.set(id, r);
        }
      };
      let queued = 0;
      for (const p of order) {
        const n = ns[p];
        queued++;
        switch (p) {
          case 'meshcni_apply': {
            if (queued > 1) await runQueued();
            queued = 0;
            const t0 = nowMs();
            await applyTables(n.path, rules.tables);
            samples.meshcni_apply.push(nowMs() - t0);
            break;
          }
          case 'exec_floor':
            driver.exec(p, [noop]);
            break;
          case 'meshcni_e2e': {
            const j = shimJob(jobsDir, agent.socketPath, n.path, { namespace: 'bench', name: 'web' }, `bench${i}e2e`);
            driver.exec(p, [SHIM], j.env, j.stdin);
            break;
          }
          case 'kernel_floor':
            driver.replay(p, n.path, files.batch);
            break;
          case 'istio_cni_way':
            // What istio-cni's Go plug-in costs per pod: a Go binary's start, then both restores
            // as processes inside the netns (summed below).
            driver.exec('istio_go', [bin.loopback], { CNI_COMMAND: 'VERSION' }, files.version);
            driver.exec('istio_v4', inNs(n, 'iptables-nft-restore', files.v4), pathEnv);
            driver.exec('istio_v6', inNs(n, 'ip6tables-nft-restore', files.v6), pathEnv);
            break;
          case 'iptables_nft_restore':
            driver.exec(p, inNs(n, 'iptables-nft-restore', files.v4), pathEnv);
            break;
          case 'iptables_legacy_restore':
            driver.exec(p, inNs(n, 'iptables-legacy-restore', files.v4), pathEnv);
            break;
          case 'nft_file':
            driver.exec(p, inNs(n, 'nft', '-f', files.nft), pathEnv);
            break;
        }
      }
      if (queued > 0) await runQueued();
      const ms = (id: string) => results.get(id)!.ms;
      for (const p of order)
        if (p !== 'meshcni_apply')
          samples[p].push(p === 'istio_cni_way' ? ms('istio_go') + ms('istio_v4') + ms('istio_v6') : ms(p));
    }
  } finally {
    await stopAgent(agent.child);
    await group.settle();
  }
  return samples;
}

interface ChurnResult {
  pods_per_s: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  agent_cpu_ms_per_pod: number;
  /** The shim processes' own CPU (rusage): exec, parse, wait, print. */
  shim_cpu_ms_per_pod: number;
  /** Every CPU's busy time during the ADDs (agent, shims, driver, kernel workers) per pod. */
  machine_cpu_ms_per_pod: number;
  /** What the machine's cores could do at that CPU cost per pod: the CPU-bound ceiling. */
  cpu_bound_pods_per_s: number;
  n: number;
}

async function churn(
  dir: string,
  driver: Driver,
): Promise<{ levels: Record<string, ChurnResult>; soak: Record<string, number> }> {
  const podsDir = join(dir, 'pods');
  const jobsDir = join(dir, 'jobs');
  mkdirSync(jobsDir, { recursive: true });
  for (let i = 0; i < CHURN_PODS; i++) writePod(podsDir, 'churn', `p${i}`, {});
  const agent = await startAgent(dir);
  const pid = agent.child.pid!;
  const levels: Record<string, ChurnResult> = {};
  const soak: Record<string, number> = {};
  /** ADDs (at `concurrency`) then DELs of pods [from, from+count) in fresh netns, through the shim, by the driver. */
  const round = async (tag: string, from: number, count: number, concurrency: number, settleMs: number) => {
    const group = new NetnsGroup();
    try {
      const nets = group.bareNamespaces(tag, count);
      const jobs = nets.map((net, k) =>
        shimJob(
          jobsDir,
          agent.socketPath,
          net,
          { namespace: 'churn', name: `p${(from + k) % CHURN_PODS}` },
          `${tag}x${from + k}`,
        ),
      );
      jobs.forEach((j, k) => driver.exec(String(k), [SHIM], j.env, j.stdin));
      const cpu0 = cpuMs(pid);
      const busy0 = systemBusyMs();
      const add = await driver.run(concurrency);
      const cpu = cpuMs(pid) - cpu0;
      const busy = systemBusyMs() - busy0;
      const failed = [...add.results].filter(([, r]) => r.status !== 0);
      if (failed.length > 0)
        throw new Error(`${failed.length} of ${count} ADDs failed at concurrency ${concurrency} (${tag})`);
      jobs.forEach((j, k) => driver.exec(String(k), [SHIM], { ...j.env, CNI_COMMAND: 'DEL' }, j.stdin));
      const del = await driver.run(8);
      const delFailed = [...del.results].filter(([, r]) => r.status !== 0);
      if (delFailed.length > 0) throw new Error(`${delFailed.length} of ${count} DELs failed (${tag})`);
      return { add, cpu, busy };
    } finally {
      await group.settle(settleMs);
    }
  };
  try {
    for (const c of CHURN_LEVELS) {
      const n = Math.min(CHURN_PODS, Math.max(c * 4, quick ? 100 : 400));
      const { add, cpu, busy } = await round(`c${c}`, 0, n, c, 3000);
      const s = summarize([...add.results.values()].map((r) => r.ms));
      const r3 = (x: number) => Math.round(x * 1000) / 1000;
      const shimCpu = [...add.results.values()].reduce((a, r) => a + r.cpuMs, 0);
      levels[String(c)] = {
        pods_per_s: Math.round((n / add.wallMs) * 1000 * 10) / 10,
        p50_ms: s.p50_ms,
        p90_ms: s.p90_ms,
        p99_ms: s.p99_ms,
        agent_cpu_ms_per_pod: r3(cpu / n),
        shim_cpu_ms_per_pod: r3(shimCpu / n),
        machine_cpu_ms_per_pod: r3(busy / n),
        cpu_bound_pods_per_s: Math.round((cpus().length * 1000) / (busy / n)),
        n,
      };
    }
    if (SOAK_PODS > 0) {
      soak.rss_kib_before = rssKiB(pid);
      soak.fds_before = openFds(pid);
      for (let start = 0; start < SOAK_PODS; start += 128)
        await round('soak', start, Math.min(128, SOAK_PODS - start), 32, 0);
      await new Promise((r) => setTimeout(r, 3000));
      soak.pods = SOAK_PODS;
      soak.rss_kib_after = rssKiB(pid);
      soak.fds_after = openFds(pid);
    }
  } finally {
    await stopAgent(agent.child);
  }
  return { levels, soak };
}

/**
 * Apply latency as the port and CIDR lists grow, both layouts; for the nft layout also `nft -f` of
 * the same ruleset (its own text) into a fresh netns, exec'd by the driver.
 */
async function scale(dir: string, driver: Driver): Promise<Record<string, Record<string, Summary>>> {
  const out: Record<string, Record<string, Summary>> = { iptables: {}, nft: {}, nft_file: {} };
  const nsenter = which('nsenter');
  const pathEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  mkdirSync(dir, { recursive: true });
  for (const size of SCALE_SIZES) {
    const plans = { iptables: scalePlan(size, 'iptables'), nft: scalePlan(size, 'nft') };
    const file = join(dir, `scale${size}.nft`);
    writeFileSync(file, plans.nft.text);
    const s: Record<string, number[]> = { iptables: [], nft: [], nft_file: [] };
    const group = new NetnsGroup();
    try {
      const made = group.pods('sc', 0, 3 * SCALE_ITER); // in bulk, before the clock (NetnsGroup.pods)
      for (let i = 0; i < SCALE_ITER; i++) {
        const n = { iptables: made[3 * i]!, nft: made[3 * i + 1]!, file: made[3 * i + 2]! };
        for (const layout of ['iptables', 'nft'] as const) {
          const t0 = nowMs();
          await applyTables(n[layout].path, plans[layout].tables);
          s[layout]!.push(nowMs() - t0);
        }
        driver.exec('f', [nsenter, `--net=${n.file.path}`, 'nft', '-f', file], pathEnv);
        const f = (await driver.run(1)).results.get('f')!;
        if (f.status !== 0) throw new Error(`nft -f of the ${size}-entry ruleset failed (status ${f.status})`);
        s.nft_file!.push(f.ms);
      }
    } finally {
      await group.settle();
    }
    for (const k of Object.keys(s)) out[k]![String(size)] = summarize(s[k]!);
  }
  return out;
}

function machine(): Record<string, string> {
  return {
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    memory_gib: (totalmem() / 2 ** 30).toFixed(1),
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    node: process.version,
    commit: execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(),
    date: new Date().toISOString().slice(0, 10),
  };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('benchmarks program network namespaces: run as root');
  const dir = benchTempDir('mcni-bench-');
  try {
    const m = machine();
    const loadBefore = loadAverage();
    console.log(
      `meshcni benchmarks (${quick ? 'quick' : 'full'}): ${m.cpus}, ${m.memory_gib} GiB, kernel ${m.kernel}, node ${m.node}, commit ${m.commit}\n`,
    );
    const driver = new Driver();
    const samples = await latency(join(dir, 'lat'), driver);
    const lat = Object.fromEntries(PATHS.map((p) => [p, summarize(samples[p])])) as Record<PathName, Summary>;
    const e2e = lat.meshcni_e2e.p50_ms;
    const rows = PATHS.map((p) => [
      p,
      lat[p].n,
      lat[p].min_ms,
      lat[p].p50_ms,
      lat[p].p90_ms,
      lat[p].p99_ms,
      `${(lat[p].p50_ms / e2e).toFixed(2)}×`,
    ]);
    const latTable = table(['path', 'n', 'min ms', 'p50 ms', 'p90 ms', 'p99 ms', 'p50 / meshcni_e2e'], rows);
    console.log(`pod-startup latency, ${ITER} fresh netns per path, interleaved\n${latTable}\n`);
    // The e2e samples' own p50/p99 over the floor's p50: the runtime's view of what meshcni adds.
    const over = (q: 'p50_ms' | 'p99_ms') => Math.round((lat.meshcni_e2e[q] - lat.exec_floor.p50_ms) * 1000) / 1000;
    const x = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    const figures = {
      e2e_over_exec_floor_p50_ms: over('p50_ms'),
      e2e_over_exec_floor_p99_ms: over('p99_ms'),
      apply_over_kernel_floor: x(lat.meshcni_apply.p50_ms, lat.kernel_floor.p50_ms),
      istio_cni_way_over_e2e: x(lat.istio_cni_way.p50_ms, e2e),
      iptables_nft_restore_over_apply: x(lat.iptables_nft_restore.p50_ms, lat.meshcni_apply.p50_ms),
    };
    const figTable = table(
      ['figure', 'value'],
      Object.entries(figures).map(([k, v]) => [k, v]),
    );
    console.log(`figures against the targets of issue #14\n${figTable}\n`);
    const ph = await phases(join(dir, 'phases'), driver, quick ? 30 : ITER);
    console.log(
      `where one ADD's time goes (agent pieces in the bench process, shim by the driver, fresh netns each)\n${ph.table}\n`,
    );
    const ch = await churn(join(dir, 'churn'), driver);
    const churnTable = table(
      [
        'concurrency',
        'pods',
        'pods/s',
        'p50 ms',
        'p90 ms',
        'p99 ms',
        'agent CPU ms/pod',
        'shim CPU ms/pod',
        'machine CPU ms/pod',
        'CPU-bound pods/s',
      ],
      Object.entries(ch.levels).map(([c, r]) => [
        c,
        r.n,
        r.pods_per_s,
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.agent_cpu_ms_per_pod,
        r.shim_cpu_ms_per_pod,
        r.machine_cpu_ms_per_pod,
        r.cpu_bound_pods_per_s,
      ]),
    );
    console.log(`churn: concurrent ADDs through the shim against one agent\n${churnTable}\n`);
    if (ch.soak.pods)
      console.log(
        `soak: ${ch.soak.pods} pods: RSS ${ch.soak.rss_kib_before} → ${ch.soak.rss_kib_after} KiB, fds ${ch.soak.fds_before} → ${ch.soak.fds_after}\n`,
      );
    const sc = await scale(join(dir, 'scale'), driver);
    driver.close();
    const scaleTable = table(
      ['layout', ...SCALE_SIZES.map((s) => `${s} entries p50 ms`)],
      Object.entries(sc).map(([layout, r]) => [layout, ...SCALE_SIZES.map((s) => r[String(s)]!.p50_ms)]),
    );
    const largest = String(SCALE_SIZES.at(-1));
    const scaleRatio = `nft -f / meshcni nft layout at ${largest} entries: ${(sc.nft_file![largest]!.p50_ms / sc.nft![largest]!.p50_ms).toFixed(2)}×`;
    console.log(
      `apply latency as port and CIDR lists grow (nft_file: nft -f of the nft layout's own text)\n${scaleTable}\n${scaleRatio}\n`,
    );
    const result = {
      machine: m,
      mode: quick ? 'quick' : 'full',
      latency: Object.fromEntries(
        PATHS.map((p) => [
          p,
          { p50_ms: lat[p].p50_ms, p90_ms: lat[p].p90_ms, p99_ms: lat[p].p99_ms, min_ms: lat[p].min_ms, n: lat[p].n },
        ]),
      ),
      figures,
      phases_p50_ms: ph.p50,
      ratios_to_meshcni_e2e: Object.fromEntries(PATHS.map((p) => [p, Math.round((lat[p].p50_ms / e2e) * 100) / 100])),
      churn: Object.fromEntries(Object.entries(ch.levels).map(([c, r]) => [c, r])),
      soak: ch.soak,
      scale: sc,
    };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/latest.json'), JSON.stringify(result, null, 2) + '\n');
    writeFileSync(
      join(ROOT, 'bench/results/latency.svg'),
      latencySvg(samples, `pod-startup latency (${m.date}, ${m.commit}, ${ITER} iterations)`),
    );
    if (!quick) {
      updateBenchReadme(
        'bench',
        `\`npm run bench\` — machine: ${m.cpus}, ${m.memory_gib} GiB, kernel ${m.kernel}, Node ${m.node}; ` +
          `${m.date}, commit ${m.commit}; load average (1/5/15 min) ${loadBefore} before, ${loadAverage()} after.\n\n` +
          '```\n' +
          latTable +
          '\n\n' +
          figTable +
          '\n\n' +
          ph.table +
          '\n\n' +
          churnTable +
          '\n\n' +
          scaleTable +
          '\n' +
          scaleRatio +
          '\n```\n\n' +
          (ch.soak.pods
            ? `Soak: ${ch.soak.pods} pods added and deleted: agent RSS ${ch.soak.rss_kib_before} → ${ch.soak.rss_kib_after} KiB, open fds ${ch.soak.fds_before} → ${ch.soak.fds_after}.\n\n`
            : '') +
          '![latency](results/latency.svg)',
      );
    }
    console.log('wrote bench/results/latest.json and bench/results/latency.svg');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`benchmark failed: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
