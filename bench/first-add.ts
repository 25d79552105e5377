// First ADD after the agent starts vs the steady state: for several fresh agent processes, the agent's
// own time ("ms" of its 'pod captured' log line) for ADD #1 and for ADDs #2..#N of same-shaped pods,
// each into a fresh netns. Run: npx tsx bench/first-add.ts [--rounds 5] [--adds 12] [--no-warm]
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from './driver.js';
import { benchTempDir, PodNetns, SHIM, shimAdd, startAgent, stopAgent } from './harness.js';
import { summarize, table } from './stats.js';

const argv = process.argv.slice(2);
const num = (flag: string, def: number): number => {
  const i = argv.indexOf(flag);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const ROUNDS = num('--rounds', 5);
const ADDS = num('--adds', 12);
const WARM = !argv.includes('--no-warm');

const pod = (name: string): string =>
  `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: bench\n  annotations:\n    traffic.sidecar.istio.io/excludeInboundPorts: "22"\nspec:\n  containers:\n    - name: app\n      image: example/app\n    - name: istio-proxy\n      image: istio/proxyv2\n      securityContext:\n        runAsUser: 1337\n        runAsGroup: 1337\nstatus:\n  phase: Running\n`;

/** The agent's own milliseconds per captured pod, in log order. */
function agentMs(log: string): number[] {
  return log
    .split('\n')
    .filter((l) => l.includes('"pod captured"'))
    .map((l) => (JSON.parse(l) as { ms: number }).ms);
}

async function round(r: number): Promise<{ first: number; steady: number[]; readyMs: number }> {
  const dir = benchTempDir('mcni-first-add-');
  mkdirSync(join(dir, 'pods'));
  for (let i = 0; i < ADDS; i++) writeFileSync(join(dir, 'pods', `p${i}.yaml`), pod(`p${i}`));
  const nets: PodNetns[] = [];
  const t0 = Date.now();
  const agent = await startAgent(dir, { logLevel: 'info', warmStart: WARM });
  // The socket exists before the agent is ready (it warms up in between): wait for ready.
  while (!agent.log().includes('meshcni agent ready')) {
    if (Date.now() - t0 > 30_000) throw new Error(`agent not ready:\n${agent.log()}`);
    await new Promise((res) => setTimeout(res, 10));
  }
  const readyMs = Date.now() - t0;
  const warm = /"msg":"(hot path warmed[^"]*|warm start failed[^"]*)"/.exec(agent.log());
  if (WARM && r === 0) console.log(`warm-up: ${warm?.[1] ?? 'no log line'}`);
  try {
    for (let i = 0; i < ADDS; i++) {
      const ns = new PodNetns(`fa${r}`).create(i);
      nets.push(ns);
      const { env, input } = shimAdd(
        agent.socketPath,
        ns.path,
        { namespace: 'bench', name: `p${i}` },
        `fa${process.pid}r${r}i${i}`,
      );
      // Exec'd by the C driver, as a runtime execs a plug-in; one ADD at a time.
      const stdin = join(dir, `add${i}.json`);
      writeFileSync(stdin, input);
      driver.exec(`add${i}`, [SHIM], env as Record<string, string>, stdin);
      const run = (await driver.run(1)).results.get(`add${i}`)!;
      if (run.status !== 0) throw new Error(`ADD ${i} failed with status ${run.status}:\n${agent.log()}`);
    }
    await new Promise((res) => setTimeout(res, 50));
    const ms = agentMs(agent.log());
    if (ms.length !== ADDS) throw new Error(`expected ${ADDS} 'pod captured' lines, got ${ms.length}:\n${agent.log()}`);
    return { first: ms[0]!, steady: ms.slice(1), readyMs };
  } finally {
    await stopAgent(agent.child);
    for (const n of nets) n.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

const driver = new Driver();
const firsts: number[] = [];
const steadies: number[] = [];
const readies: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const { first, steady, readyMs } = await round(r);
  firsts.push(first);
  steadies.push(...steady);
  readies.push(readyMs);
}
driver.close();
const f = summarize(firsts);
const s = summarize(steadies);
console.log(`meshcni first ADD vs steady (agent-side ms), warmStart ${WARM}, ${ROUNDS} agents × ${ADDS} ADDs`);
console.log(
  table(
    ['', 'n', 'p50', 'p90', 'max'],
    [
      ['first ADD', firsts.length, f.p50_ms.toFixed(2), f.p90_ms.toFixed(2), f.max_ms.toFixed(2)],
      ['steady ADD', steadies.length, s.p50_ms.toFixed(2), s.p90_ms.toFixed(2), s.max_ms.toFixed(2)],
      [
        'start→ready (ms, wall)',
        readies.length,
        summarize(readies).p50_ms.toFixed(0),
        summarize(readies).p90_ms.toFixed(0),
        summarize(readies).max_ms.toFixed(0),
      ],
    ],
  ),
);
console.log(`first/steady (p50): ${(f.p50_ms / s.p50_ms).toFixed(2)}×   (target ≤ 3×)`);
