// What one ADD costs the agent, counted rather than timed: sequential ADDs through the shim (the C
// driver execs it) against the built agent, with `strace -c -f` attached to the agent for the
// syscalls per ADD, and /proc for the CPU each of the agent's threads used. The counts do not
// depend on how busy the machine is; the CPU figures do a little. `--cpu-prof` also writes a V8
// profile of the agent to bench/results/ (open it in Chrome's DevTools).
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from './driver.js';
import { benchTempDir, NetnsGroup, ROOT, SHIM, shimAdd, startAgent, stopAgent } from './harness.js';
import { writePod } from './rules.js';
import { table } from './stats.js';

const ADDS = Number(process.env.BENCH_ADDS ?? 400);
const cpuProf = process.argv.includes('--cpu-prof');

/** user and system CPU ms per thread of a process (USER_HZ 100). */
function threadCpu(pid: number): Map<string, { name: string; user: number; sys: number }> {
  const out = new Map<string, { name: string; user: number; sys: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.set(tid, {
        name: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')),
        user: Number(f[11]) * 10,
        sys: Number(f[12]) * 10,
      });
    } catch {
      // a thread that ended meanwhile
    }
  }
  return out;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('this benchmark programs network namespaces: run as root');
  const dir = benchTempDir('mcni-agent-cost-');
  const jobs = join(dir, 'jobs');
  mkdirSync(jobs, { recursive: true });
  writePod(join(dir, 'pods'), 'bench', 'web', {});
  const results = join(ROOT, 'bench/results');
  mkdirSync(results, { recursive: true });
  if (cpuProf)
    process.env.BENCH_AGENT_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${results} --cpu-prof-name=agent-cost.cpuprofile`;
  const agent = await startAgent(dir);
  const pid = agent.child.pid!;
  const driver = new Driver();
  const group = new NetnsGroup();
  try {
    const nets = group.bareNamespaces('ac', 2 * ADDS + 20);
    const job = (k: number) => {
      const { env, input } = shimAdd(agent.socketPath, nets[k]!, { namespace: 'bench', name: 'web' }, `ac${k}`);
      const f = join(jobs, `${k}.json`);
      writeFileSync(f, input);
      driver.exec(String(k), [SHIM], env as Record<string, string>, f);
    };
    const batch = async (from: number, count: number) => {
      for (let k = from; k < from + count; k++) job(k);
      const run = await driver.run(1);
      const failed = [...run.results.values()].filter((r) => r.status !== 0).length;
      if (failed > 0) throw new Error(`${failed} of ${count} ADDs failed`);
    };
    await batch(2 * ADDS, 20); // warm-up, not counted
    // CPU first, untraced; then the same number of ADDs under strace for the counts.
    const before = threadCpu(pid);
    await batch(0, ADDS);
    const after = threadCpu(pid);
    const traceFile = join(dir, 'strace.txt');
    const strace = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', traceFile], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1500)); // attached to every thread
    await batch(ADDS, ADDS);
    strace.kill('SIGINT');
    await new Promise((r) => strace.once('exit', r));
    const rows: (string | number)[][] = [];
    for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line);
      if (m && m[2] !== 'total') rows.push([m[2]!, Math.round((Number(m[1]) / ADDS) * 100) / 100]);
    }
    rows.sort((a, b) => (b[1] as number) - (a[1] as number));
    const perAdd = rows.filter((r) => (r[0] as string) !== 'futex').reduce((a, r) => a + (r[1] as number), 0);
    console.log(
      `agent syscalls per ADD (${ADDS} sequential ADDs, strace -c -f; futex is thread hand-off and strace's own stops)\n${table(['syscall', 'per ADD'], rows)}\nall but futex: ${perAdd.toFixed(1)} per ADD\n`,
    );
    const threads: (string | number)[][] = [];
    for (const [tid, a] of after) {
      const b = before.get(tid) ?? { user: 0, sys: 0 };
      const user = a.user - b.user;
      const sys = a.sys - b.sys;
      if (user + sys > 0)
        threads.push([
          `${tid} ${a.name}${tid === String(pid) ? ' (main: event loop, inline commits)' : ''}`,
          (user / ADDS).toFixed(3),
          (sys / ADDS).toFixed(3),
        ]);
    }
    console.log(
      `agent CPU per ADD by thread, ms (${ADDS} untraced sequential ADDs; /proc ticks of 10 ms)\n${table(['thread', 'user', 'system'], threads)}`,
    );
  } finally {
    await stopAgent(agent.child);
    driver.close();
    await group.settle(0);
  }
  if (cpuProf) console.log(`\nV8 profile of the agent: ${join(results, 'agent-cost.cpuprofile')}`);
}

main().catch((e: unknown) => {
  console.error(`benchmark failed: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
