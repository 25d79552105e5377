// Where one ADD's time goes: the agent's pieces in this process (as the agent wires them), each
// dependency wrapped with a clock, the shim exec'd by the C driver; the driver's and Node's clocks
// are both CLOCK_MONOTONIC, so the shim's start lines up with the server's accept. Sequential ADDs,
// each into a fresh netns; medians per phase. For reference, the driver replays the same bytes into
// another fresh netns each iteration (the kernel floor), in its own run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { parseCaptureConfig } from '../src/capture/config.js';
import { applyPlan, makePlanner } from '../src/agent/agent.js';
import { createCniHandler } from '../src/agent/endpoint/handler.js';
import { createMetrics } from '../src/agent/metrics.js';
import { DirPodSource } from '../src/agent/pods/dir.js';
import { CniSocketServer, type RequestTiming } from '../src/agent/endpoint/server.js';
import { PodStateStore } from '../src/agent/state/records.js';
import { readTables, createBatch } from '../src/nft/apply.js';
import type { Driver } from './driver.js';
import { NetnsGroup, SHIM, shimAdd } from './harness.js';
import { writePod } from './rules.js';
import { summarize, table } from './stats.js';

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

export async function phases(
  dir: string,
  driver: Driver,
  iterations: number,
): Promise<{ table: string; p50: Record<string, number> }> {
  writePod(join(dir, 'pods'), 'bench', 'web', {});
  const log = pino({ level: 'warn' }, pino.destination('/dev/null'));
  const pods = new DirPodSource(join(dir, 'pods'), log);
  await pods.start();
  const state = new PodStateStore(join(dir, 'state'));
  state.load();
  const planner = makePlanner(parseCaptureConfig({}));
  const lookup = pods.lookup.bind(pods);
  let mark: Record<string, number> = {};
  const timed =
    <A extends unknown[], R>(name: string, f: (...a: A) => R) =>
    (...a: A): R => {
      const t0 = now();
      const r = f(...a);
      if (r instanceof Promise) return r.finally(() => (mark[name] = now() - t0)) as R;
      mark[name] = now() - t0;
      return r;
    };
  pods.lookup = timed('lookup', lookup);
  const handler = createCniHandler({
    excludeNamespaces: [],
    pods,
    planPod: timed('plan', planner),
    applyPlan: timed('apply', applyPlan),
    readTables,
    state,
    metrics: createMetrics(),
    log,
    isReady: () => true,
  });
  let timing: RequestTiming | undefined;
  const socketPath = join(dir, 'run', 'cni.sock');
  const server = new CniSocketServer({
    socketPath,
    log,
    handler: async (req) => {
      mark.handlerIn = now();
      const r = await handler(req);
      mark.handlerOut = now();
      return r;
    },
    onTiming: (t) => (timing = t),
  });
  await server.listen();
  const jobs = join(dir, 'jobs');
  mkdirSync(jobs, { recursive: true });
  const batchFile = join(dir, 'batch.bin');
  const plan = planner((await lookup({ namespace: 'bench', name: 'web' }, { timeoutMs: 1000 }))!);
  if (!plan.capture) throw new Error('bench pod is not captured');
  writeFileSync(batchFile, createBatch(plan.tables).buffer);
  const rows: Record<string, number[]> = {};
  const add = (k: string, v: number) => (rows[k] ??= []).push(v);
  const group = new NetnsGroup();
  const CHUNK = 25;
  let made: ReturnType<NetnsGroup['pods']> = [];
  try {
    for (let i = 0; i < iterations; i++) {
      // The agent runs in this process: namespaces are made in bulk between stretches of ADDs, never
      // right before one (see NetnsGroup.pods).
      if (i % CHUNK === 0) made = group.pods('ph', 2 * i, 2 * Math.min(CHUNK, iterations - i));
      const ns = made[2 * (i % CHUNK)]!;
      const floorNs = made[2 * (i % CHUNK) + 1]!;
      const { env, input } = shimAdd(socketPath, ns.path, { namespace: 'bench', name: 'web' }, `phase${i}`);
      const stdin = join(jobs, `phase${i}.json`);
      writeFileSync(stdin, input);
      const floor = async () => {
        driver.replay('floor', floorNs.path, batchFile);
        const f = (await driver.run(1)).results.get('floor')!;
        if (f.status !== 0) throw new Error(`kernel floor replay ${i} failed (status ${f.status})`);
        return f.ms;
      };
      // The reference replay goes before or after the ADD, alternately.
      const before = i % 2 === 0 ? await floor() : undefined;
      mark = {};
      timing = undefined;
      driver.exec('add', [SHIM], env as Record<string, string>, stdin);
      const { results } = await driver.run(1);
      const r = results.get('add')!;
      if (r.status !== 0 || !timing) throw new Error(`phase ADD ${i} failed (status ${r.status})`);
      const floorMs = before ?? (await floor());
      const t = timing as RequestTiming;
      const inHandler = mark.handlerOut! - mark.handlerIn!;
      add('1 shim exec, stdin/env parse, connect, agent wakes (spawn → accept)', t.acceptedAt - r.startMs);
      add('2 request read (accept → whole request in)', t.receivedAt - t.acceptedAt);
      add('3 JSON parse + request validation', mark.handlerIn! - t.receivedAt);
      add('4 pod lookup', mark.lookup!);
      add('5 plan (cached per pod shape)', mark.plan!);
      add('6 apply: open + check netns, setns, socket, kernel commit (inline)', mark.apply!);
      add('7 record save, metrics, log, result', inHandler - mark.lookup! - mark.plan! - mark.apply!);
      add('8 reply written (handler out → socket end)', t.answeredAt - mark.handlerOut!);
      add('9 shim wakes, reads answer, prints, exits, reaped', r.startMs + r.ms - t.answeredAt);
      add('= end to end (driver)', r.ms);
      add('(reference: kernel floor, the same bytes replayed by the C driver)', floorMs);
    }
  } finally {
    await server.close();
    await pods.stop();
    await group.settle();
  }
  const p50 = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, summarize(v).p50_ms]));
  return {
    p50,
    table: table(
      ['phase of one ADD', 'p50 ms', 'p90 ms'],
      Object.entries(rows).map(([k, v]) => [k, summarize(v).p50_ms, summarize(v).p90_ms]),
    ),
  };
}
