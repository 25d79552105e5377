// The benchmark suite: pod-startup latency against the iptables way (interleaved, one run), churn
// against one agent, and rule-list scale for both layouts. Prints tables, writes
// bench/results/latest.json and an SVG of the latency distributions, and refreshes the README's
// results table. Never fails on timing. `--quick` keeps it under two minutes (CI).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { applyTables } from '../src/nft/apply.js';
import { rulesForBench, scalePod, writePod } from './rules.js';
import { buildNoop, cpuMs, openFds, PodNetns, ROOT, rssKiB, runCapture, SHIM, shimAdd, startAgent, stopAgent, timedRun } from './harness.js';
import { latencySvg } from './plot.js';
import { nowMs, summarize, table, type Summary } from './stats.js';

const quick = process.argv.includes('--quick');
const ITER = Number(process.env.BENCH_ITERATIONS ?? (quick ? 40 : 200));
const CHURN_LEVELS = quick ? [1, 8, 32] : [1, 8, 32, 128];
const CHURN_PODS = Number(process.env.BENCH_CHURN_PODS ?? (quick ? 200 : 1000));
const SOAK_PODS = Number(process.env.BENCH_SOAK_PODS ?? (quick ? 0 : 10_000));
const SCALE_SIZES = quick ? [0, 10, 100] : [0, 10, 100, 1000];
const SCALE_ITER = quick ? 10 : 40;

type PathName = 'exec_floor' | 'meshcni_e2e' | 'meshcni_apply' | 'istio_cni_way' | 'iptables_nft_restore' | 'iptables_legacy_restore' | 'nft_file';
const PATHS: PathName[] = ['exec_floor', 'meshcni_e2e', 'meshcni_apply', 'istio_cni_way', 'iptables_nft_restore', 'iptables_legacy_restore', 'nft_file'];

const nsenter = (ns: PodNetns, cmd: string[]): [string, string[]] => ['nsenter', [`--net=${ns.path}`, ...cmd]];

async function latency(dir: string): Promise<Record<PathName, number[]>> {
  const rules = rulesForBench();
  writePod(join(dir, 'pods'), 'bench', 'web', {});
  const agent = await startAgent(dir);
  const noop = buildNoop();
  const files = { v4: join(dir, 'v4.rules'), v6: join(dir, 'v6.rules'), nft: join(dir, 'rules.nft') };
  writeFileSync(files.v4, rules.v4);
  writeFileSync(files.v6, rules.v6);
  writeFileSync(files.nft, rules.nft);
  const samples = Object.fromEntries(PATHS.map((p) => [p, [] as number[]])) as Record<PathName, number[]>;
  const pathEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  try {
    for (let i = 0; i < ITER; i++) {
      // Fresh namespaces for every path that programs one, made before the clock starts.
      const ns = Object.fromEntries(PATHS.map((p) => [p, new PodNetns(p.slice(0, 4)).create(i)])) as Record<PathName, PodNetns>;
      try {
        // Rotate the order so no path always runs first (cache warmth, kernel work queues).
        const order = PATHS.map((_, k) => PATHS[(k + i) % PATHS.length]!);
        for (const p of order) {
          const n = ns[p];
          switch (p) {
            case 'exec_floor':
              samples[p].push(await timedRun(noop, []));
              break;
            case 'meshcni_e2e': {
              const { env, input } = shimAdd(agent.socketPath, n.path, { namespace: 'bench', name: 'web' }, `bench${i}e2e`);
              const r = await runCapture(SHIM, env, input);
              if (r.code !== 0) throw new Error(`shim ADD failed: ${r.stdout}`);
              samples[p].push(r.ms);
              break;
            }
            case 'meshcni_apply': {
              const t0 = nowMs();
              await applyTables(n.path, rules.tables);
              samples[p].push(nowMs() - t0);
              break;
            }
            case 'istio_cni_way': {
              // What istio-cni's Go plug-in costs per pod: a Go binary's start, then both restores
              // as processes inside the netns.
              const t0 = nowMs();
              await timedRun('/usr/lib/cni/loopback', [], { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}' });
              await timedRun(...nsenter(n, ['iptables-nft-restore', files.v4]), { env: pathEnv });
              await timedRun(...nsenter(n, ['ip6tables-nft-restore', files.v6]), { env: pathEnv });
              samples[p].push(nowMs() - t0);
              break;
            }
            case 'iptables_nft_restore':
              samples[p].push(await timedRun(...nsenter(n, ['iptables-nft-restore', files.v4]), { env: pathEnv }));
              break;
            case 'iptables_legacy_restore':
              samples[p].push(await timedRun(...nsenter(n, ['iptables-legacy-restore', files.v4]), { env: pathEnv }));
              break;
            case 'nft_file':
              samples[p].push(await timedRun(...nsenter(n, ['nft', '-f', files.nft]), { env: pathEnv }));
              break;
          }
        }
      } finally {
        for (const n of Object.values(ns)) n.destroy();
      }
    }
  } finally {
    await stopAgent(agent.child);
  }
  return samples;
}

interface ChurnResult {
  pods_per_s: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  agent_cpu_ms_per_pod: number;
  n: number;
}

async function churn(dir: string): Promise<{ levels: Record<string, ChurnResult>; soak: Record<string, number> }> {
  const podsDir = join(dir, 'pods');
  const total = Math.max(CHURN_PODS, SOAK_PODS);
  for (let i = 0; i < Math.min(total, CHURN_PODS); i++) writePod(podsDir, 'churn', `p${i}`, {});
  const agent = await startAgent(dir);
  const pid = agent.child.pid!;
  const levels: Record<string, ChurnResult> = {};
  const soak: Record<string, number> = {};
  try {
    for (const c of CHURN_LEVELS) {
      const n = Math.min(CHURN_PODS, Math.max(c * 4, quick ? 100 : 400));
      const nets = Array.from({ length: n }, (_, i) => new PodNetns(`c${c}`).create(i));
      const lat: number[] = [];
      const cpu0 = cpuMs(pid);
      const t0 = nowMs();
      let next = 0;
      await Promise.all(
        Array.from({ length: c }, async () => {
          while (next < n) {
            const i = next++;
            const { env, input } = shimAdd(agent.socketPath, nets[i]!.path, { namespace: 'churn', name: `p${i}` }, `churn${c}x${i}`);
            const r = await runCapture(SHIM, env, input);
            if (r.code !== 0) throw new Error(`ADD failed at concurrency ${c}: ${r.stdout}`);
            lat.push(r.ms);
          }
        }),
      );
      const wall = nowMs() - t0;
      const cpu = cpuMs(pid) - cpu0;
      // DEL all of them, as the runtime would.
      await Promise.all(
        nets.map((net, i) => {
          const { env, input } = shimAdd(agent.socketPath, net.path, { namespace: 'churn', name: `p${i}` }, `churn${c}x${i}`);
          return runCapture(SHIM, { ...env, CNI_COMMAND: 'DEL' }, input);
        }),
      );
      for (const net of nets) net.destroy();
      const s = summarize(lat);
      levels[String(c)] = { pods_per_s: Math.round((n / wall) * 1000 * 10) / 10, p50_ms: s.p50_ms, p90_ms: s.p90_ms, p99_ms: s.p99_ms, agent_cpu_ms_per_pod: Math.round((cpu / n) * 1000) / 1000, n };
    }
    if (SOAK_PODS > 0) {
      soak.rss_kib_before = rssKiB(pid);
      soak.fds_before = openFds(pid);
      for (let i = CHURN_PODS; i < SOAK_PODS; i++) writePod(podsDir, 'churn', `p${i}`, {});
      await new Promise((r) => setTimeout(r, 1500));
      const batch = 64;
      for (let start = 0; start < SOAK_PODS; start += batch) {
        const nets = Array.from({ length: Math.min(batch, SOAK_PODS - start) }, (_, k) => new PodNetns('soak').create(start + k));
        await Promise.all(
          nets.map(async (net, k) => {
            const i = start + k;
            const { env, input } = shimAdd(agent.socketPath, net.path, { namespace: 'churn', name: `p${i}` }, `soak${i}`);
            const r = await runCapture(SHIM, env, input);
            if (r.code !== 0) throw new Error(`soak ADD failed: ${r.stdout}`);
            await runCapture(SHIM, { ...env, CNI_COMMAND: 'DEL' }, input);
          }),
        );
        for (const net of nets) net.destroy();
      }
      await new Promise((r) => setTimeout(r, 1000));
      soak.pods = SOAK_PODS;
      soak.rss_kib_after = rssKiB(pid);
      soak.fds_after = openFds(pid);
    }
  } finally {
    await stopAgent(agent.child);
  }
  return { levels, soak };
}

async function scale(): Promise<Record<string, Record<string, Summary>>> {
  const out: Record<string, Record<string, Summary>> = {};
  for (const layout of ['iptables', 'nft'] as const) {
    out[layout] = {};
    for (const size of SCALE_SIZES) {
      const tables = scalePod(size, layout);
      const s: number[] = [];
      for (let i = 0; i < SCALE_ITER; i++) {
        const n = new PodNetns('sc').create(i);
        try {
          const t0 = nowMs();
          await applyTables(n.path, tables);
          s.push(nowMs() - t0);
        } finally {
          n.destroy();
        }
      }
      out[layout][String(size)] = summarize(s);
    }
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

function updateReadme(text: string): void {
  const path = join(ROOT, 'README.md');
  const readme = readFileSync(path, 'utf8');
  const begin = '<!-- bench:begin -->';
  const end = '<!-- bench:end -->';
  const a = readme.indexOf(begin);
  const b = readme.indexOf(end);
  if (a < 0 || b < a) return;
  writeFileSync(path, `${readme.slice(0, a + begin.length)}\n${text}\n${readme.slice(b)}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('benchmarks program network namespaces: run as root');
  const dir = mkdtempSync(join(tmpdir(), 'mcni-bench-'));
  try {
    const m = machine();
    console.log(`meshcni benchmarks (${quick ? 'quick' : 'full'}): ${m.cpus}, ${m.memory_gib} GiB, kernel ${m.kernel}, node ${m.node}, commit ${m.commit}\n`);
    const samples = await latency(join(dir, 'lat'));
    const lat = Object.fromEntries(PATHS.map((p) => [p, summarize(samples[p])])) as Record<PathName, Summary>;
    const e2e = lat.meshcni_e2e.p50_ms;
    const rows = PATHS.map((p) => [p, lat[p].n, lat[p].min_ms, lat[p].p50_ms, lat[p].p90_ms, lat[p].p99_ms, `${(lat[p].p50_ms / e2e).toFixed(2)}×`]);
    const latTable = table(['path', 'n', 'min ms', 'p50 ms', 'p90 ms', 'p99 ms', 'p50 / meshcni_e2e'], rows);
    console.log(`pod-startup latency, ${ITER} fresh netns per path, interleaved\n${latTable}\n`);
    const ch = await churn(join(dir, 'churn'));
    const churnTable = table(
      ['concurrency', 'pods', 'pods/s', 'p50 ms', 'p90 ms', 'p99 ms', 'agent CPU ms/pod'],
      Object.entries(ch.levels).map(([c, r]) => [c, r.n, r.pods_per_s, r.p50_ms, r.p90_ms, r.p99_ms, r.agent_cpu_ms_per_pod]),
    );
    console.log(`churn: concurrent ADDs through the shim against one agent\n${churnTable}\n`);
    if (ch.soak.pods) console.log(`soak: ${ch.soak.pods} pods: RSS ${ch.soak.rss_kib_before} → ${ch.soak.rss_kib_after} KiB, fds ${ch.soak.fds_before} → ${ch.soak.fds_after}\n`);
    const sc = await scale();
    const scaleTable = table(
      ['layout', ...SCALE_SIZES.map((s) => `${s} entries p50 ms`)],
      Object.entries(sc).map(([layout, r]) => [layout, ...SCALE_SIZES.map((s) => r[String(s)]!.p50_ms)]),
    );
    console.log(`apply latency as port and CIDR lists grow\n${scaleTable}\n`);
    const result = {
      machine: m,
      mode: quick ? 'quick' : 'full',
      latency: Object.fromEntries(PATHS.map((p) => [p, { p50_ms: lat[p].p50_ms, p90_ms: lat[p].p90_ms, p99_ms: lat[p].p99_ms, min_ms: lat[p].min_ms, n: lat[p].n }])),
      ratios_to_meshcni_e2e: Object.fromEntries(PATHS.map((p) => [p, Math.round((lat[p].p50_ms / e2e) * 100) / 100])),
      churn: Object.fromEntries(Object.entries(ch.levels).map(([c, r]) => [c, r])),
      soak: ch.soak,
      scale: sc,
    };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/latest.json'), JSON.stringify(result, null, 2) + '\n');
    writeFileSync(join(ROOT, 'bench/results/latency.svg'), latencySvg(samples, `pod-startup latency (${m.date}, ${m.commit}, ${ITER} iterations)`));
    if (!quick) {
      updateReadme(
        `Machine: ${m.cpus}, ${m.memory_gib} GiB, kernel ${m.kernel}, Node ${m.node}; ${m.date}, commit ${m.commit}.\n\n` +
          '```\n' + latTable + '\n\n' + churnTable + '\n\n' + scaleTable + '\n```\n\n' +
          (ch.soak.pods ? `Soak: ${ch.soak.pods} pods added and deleted: agent RSS ${ch.soak.rss_kib_before} → ${ch.soak.rss_kib_after} KiB, open fds ${ch.soak.fds_before} → ${ch.soak.fds_after}.\n\n` : '') +
          '![latency](bench/results/latency.svg)',
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
