// Worker thread entry: everything a big pod's rules cost — planning, digest, reading a namespace
// back and comparing, encoding and programming — happens here, off the agent's event loop. The
// agent thread only ever sees the digest, labels and summary; the rules stay here, held by a
// handle, until the agent releases them. agent → plan/pool → plan/worker → plan/apply → nft.
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import type { CaptureConfig } from '../../capture/config.js';
import { readTables } from '../../nft/apply.js';
import { tableLabels } from '../../nft/model.js';
import type { RoutingPlan } from '../../rtnetlink/route.js';
import { diffTables } from '../../nft/ruleset.js';
import { computeRulesDigest, type LocalPlan } from './types.js';
import { applyPlan } from './apply.js';
import { buildPlan } from './build.js';
import type { WorkerAnswer, WorkerRequest } from './pool.js';

type HeldPlan = Extract<LocalPlan, { capture: true }> & { routing?: RoutingPlan };

const { capture, testHooks } = workerData as { capture: CaptureConfig; testHooks?: boolean };
const WORKER_NICE = 10;
/** Plans the agent still holds a handle to (between an ADD's plan and its apply, a CHECK's diff). */
const held = new Map<number, HeldPlan>();

/**
 * Lowers this thread's scheduling priority (nice 10, Linux: a thread id is a PRIO_PROCESS target):
 * a big pod's seconds of planning are throughput work, while the event loop's requests are
 * latency. Without it the two share a core evenly and ordinary ADDs wait. Says what it got.
 */
function lowerThreadPriority(): { nice: number } | { problem: string } {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return { problem: 'no thread id in /proc/thread-self' };
    setPriority(tid, WORKER_NICE);
    return { nice: getPriority(tid) };
  } catch (e) {
    return { problem: (e as Error).message };
  }
}

function heldPlan(handle: number): HeldPlan {
  const p = held.get(handle);
  if (!p) throw new Error(`plan handle ${handle} is not held by this worker`);
  return p;
}

/** An error as data, keeping the errno name the agent maps to a CNI code (bad netns → 4). */
function errorAnswer(id: number, e: unknown): WorkerAnswer {
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  return { id, error: { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) } };
}

async function run(m: WorkerRequest): Promise<WorkerAnswer> {
  switch (m.op) {
    case 'plan': {
      const plan = buildPlan(m.pod, capture);
      if (!plan.capture) return { id: m.id, plan: { capture: false, reason: plan.reason } };
      held.set(m.id, plan);
      return {
        id: m.id,
        plan: {
          capture: true,
          layout: plan.layout,
          summary: plan.summary,
          digest: computeRulesDigest(plan.tables),
          labels: tableLabels(plan.tables),
        },
      };
    }
    case 'apply':
      await applyPlan(m.netns, heldPlan(m.handle));
      return { id: m.id };
    case 'diff':
      return { id: m.id, diffs: diffTables(heldPlan(m.handle).tables, await readTables(m.netns)) };
  }
}

parentPort?.on(
  'message',
  (m: WorkerRequest | { op: 'release'; handle: number } | { op: 'pause'; gate: Int32Array }) => {
    if (m.op === 'release') {
      held.delete(m.handle);
      return;
    }
    // Test hook: the thread sleeps until the test opens the gate (PlanPool.pauseWorker).
    if (m.op === 'pause') {
      if (testHooks === true) Atomics.wait(m.gate, 0, 0);
      return;
    }
    // Test hook: lets the pool's crash recovery be tested against a real dying worker.
    if (m.op === 'plan' && m.crash === true && testHooks === true) process.exit(7);
    // The pool sends one request at a time; each answer says how big this isolate's heap has grown,
    // so the pool can replace a worker whose heap stays large after big plans.
    void run(m)
      .catch((e: unknown) => errorAnswer(m.id, e))
      .then((a) => parentPort!.postMessage({ ...a, heapBytes: getHeapStatistics().total_heap_size }));
  },
);

// Id 0 answers no request: the pool records the priority this thread runs at.
parentPort?.postMessage({ id: 0, priority: lowerThreadPriority() });
