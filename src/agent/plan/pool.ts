// Big pods are handled in one worker thread so their seconds of CPU and tens of MB of rules never
// hold up other pods' requests on the event loop: agent → plan/pool → plan/worker. The worker plans,
// compares and programs; the agent thread gets a digest, labels and a handle. Ordinary pods never
// come here.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CaptureConfig } from '../../capture/config.js';
import { CNI_ERR, CniError } from '../cni.js';
import type { HeldRules, PodPlan } from './types.js';

/** Annotation list entries above which a pod is planned in the worker (ordinary pods have tens). */
export const BIG_POD_LIST_ENTRIES = 256;
/** Big pods waiting for the worker beyond the one being planned; more fail with "try again later". */
export const PLAN_QUEUE_LIMIT = 16;
/**
 * A worker whose heap is this big once idle is replaced: V8 keeps the pages a 10,000-entry plan grew
 * its heap to, and only ending the isolate gives them back. Measured with bench:big: without it the
 * agent's RSS settles ~200 MB higher after big pods (~420 MB instead of ~230 MB).
 */
export const RECYCLE_HEAP_BYTES = 64 << 20;

/** What the agent thread asks of the worker: plan (and hold) a pod, or compare / program a held plan. */
export type WorkerRequest =
  | { id: number; op: 'plan'; pod: Record<string, unknown>; crash?: boolean }
  | { id: number; op: 'apply'; handle: number; netns: string }
  | { id: number; op: 'diff'; handle: number; netns: string };

/** The worker's answer; a captured plan's rules stay in the worker under the request's id as handle. */
export interface WorkerAnswer {
  id: number;
  plan?:
    | { capture: false; reason: string }
    | { capture: true; layout: string; summary: Record<string, unknown>; digest: string; labels: string[] };
  diffs?: string[];
  error?: { name: string; message: string; code?: string };
  /** The worker isolate's heap after the request. */
  heapBytes?: number;
  /** Sent once at start (id 0): the nice value the worker thread runs at, or why it could not lower it. */
  priority?: { nice: number } | { problem: string };
}

/**
 * Total entries of the pod's comma-separated rule annotations: a cheap estimate, before planning,
 * of how much work its plan is (rules and set elements grow with it).
 */
export function listEntries(pod: Record<string, unknown>): number {
  const ann = (pod.metadata as { annotations?: unknown } | undefined)?.annotations;
  if (typeof ann !== 'object' || ann === null) return 0;
  let n = 0;
  for (const [k, v] of Object.entries(ann as Record<string, unknown>)) {
    if (
      typeof v !== 'string' ||
      !(
        k.startsWith('traffic.sidecar.istio.io/') ||
        k.startsWith('sidecar.istio.io/') ||
        k === 'istio.io/reroute-virtual-interfaces'
      )
    )
      continue;
    for (let i = v.indexOf(','); i !== -1; i = v.indexOf(',', i + 1)) n++;
    n++;
  }
  return n;
}

/** A pod whose rules are made, compared and programmed in the plan worker. */
export function isBigPod(pod: Record<string, unknown>): boolean {
  return listEntries(pod) > BIG_POD_LIST_ENTRIES;
}

/**
 * The worker script beside this module (dist/agent/plan/worker.js in production). Under vitest
 * this module is src/agent/plan/pool.ts and no .js sits beside it: the build's copy is used.
 */
function workerScript(): URL {
  const here = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = new URL('../../../dist/agent/plan/worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new Error(
    `plan worker script not found at ${fileURLToPath(here)} or ${fileURLToPath(built)} (run npm run build)`,
  );
}

interface Job {
  req: WorkerRequest;
  who: string;
  /** A request on a held plan: only the worker that holds it can answer. */
  worker?: Worker;
  resolve: (a: WorkerAnswer) => void;
  reject: (e: Error) => void;
}

interface Handle {
  worker: Worker;
  id: number;
}

/** The worker's error as an Error again, with its errno name (the handler maps a bad netns to code 4). */
function revive(e: NonNullable<WorkerAnswer['error']>): Error {
  const err = new Error(e.message) as Error & { code?: string };
  err.name = e.name;
  if (e.code !== undefined) err.code = e.code;
  return err;
}

export class PlanPool {
  private worker?: Worker;
  private current?: Job;
  private readonly queue: Job[] = [];
  private readonly held = new Set<Handle>();
  private nextId = 1;
  private closed = false;
  private lastHeapBytes = 0;
  /** Workers started so far (the first one included): restarts and recycles are this minus one. */
  started = 0;
  /** Idle workers ended because their heap stayed big (RECYCLE_HEAP_BYTES). */
  recycled = 0;
  /** The latest worker's scheduling priority (nice), or why it stayed at the default. */
  workerPriority?: { nice: number } | { problem: string };
  /** Requests the worker answered, by kind: ADD, CHECK and reconcile of big pods all show here. */
  readonly counts = { plan: 0, apply: 0, diff: 0 };

  constructor(
    private readonly capture: CaptureConfig,
    private readonly opts: { queueLimit?: number; testHooks?: boolean; recycleHeapBytes?: number } = {},
  ) {}

  /**
   * Plans `pod` in the worker; `who` (namespace/name) names the pod in errors. A captured pod's
   * rules stay in the worker: the caller must release() the plan when done with it.
   */
  plan(pod: Record<string, unknown>, who: string): Promise<PodPlan> {
    return this.planIn(pod, who, false);
  }

  /** Test hook: the worker exits while planning this request (needs testHooks). */
  planAndCrash(pod: Record<string, unknown>, who: string): Promise<PodPlan> {
    return this.planIn(pod, who, true);
  }

  private async planIn(pod: Record<string, unknown>, who: string, crash: boolean): Promise<PodPlan> {
    if (this.closed) throw new CniError(CNI_ERR.tryAgainLater, `pod ${who}: the agent is shutting down`, '', 503);
    const limit = this.opts.queueLimit ?? PLAN_QUEUE_LIMIT;
    const waiting = this.queue.filter((j) => j.req.op === 'plan').length;
    if (waiting >= limit) {
      throw new CniError(
        CNI_ERR.tryAgainLater,
        `pod ${who}: ${waiting} pods with large annotation lists are already waiting to be planned (limit ${limit}); try again later`,
        '',
        503,
      );
    }
    const id = this.nextId++;
    const a = await new Promise<WorkerAnswer>((resolve, reject) => {
      this.queue.push({ req: { id, op: 'plan', pod, ...(crash ? { crash } : {}) }, who, resolve, reject });
      this.pump();
    });
    // A planning error is the pod's bad input (like the in-thread planner's throw).
    if (a.error || !a.plan) throw new Error(a.error?.message ?? 'the plan worker answered without a plan');
    this.counts.plan++;
    const p = a.plan;
    if (!p.capture) return p;
    if (!this.worker)
      throw new CniError(CNI_ERR.internal, `pod ${who}: the plan worker ended right after planning it; retry`);
    const handle: Handle = { worker: this.worker, id };
    this.held.add(handle);
    const rules: HeldRules = {
      digest: p.digest,
      labels: p.labels,
      diff: async (netns) =>
        (await this.onHeld(handle, who, { id: this.nextId++, op: 'diff', handle: id, netns })).diffs ?? [],
      apply: async (netns) =>
        void (await this.onHeld(handle, who, { id: this.nextId++, op: 'apply', handle: id, netns })),
      release: () => this.release(handle),
    };
    return { capture: true, layout: p.layout, summary: p.summary, held: rules };
  }

  /**
   * Test hook (needs testHooks): blocks the worker thread until the returned function is called,
   * so a test can hold a big pod's request pending and watch other pods' requests go by.
   */
  pauseWorker(): () => void {
    if (this.opts.testHooks !== true) throw new Error('pauseWorker is a test hook: create the pool with testHooks');
    const gate = new Int32Array(new SharedArrayBuffer(4));
    (this.worker ?? this.spawn()).postMessage({ op: 'pause', gate });
    return () => {
      Atomics.store(gate, 0, 1);
      Atomics.notify(gate, 0);
    };
  }

  /** A request on a held plan goes ahead of waiting plans: it finishes a pod and frees its rules. */
  private async onHeld(handle: Handle, who: string, req: WorkerRequest): Promise<WorkerAnswer> {
    if (!this.held.has(handle) || handle.worker !== this.worker) {
      throw new CniError(
        CNI_ERR.internal,
        `pod ${who}: the plan worker was restarted since this pod was planned; retry`,
      );
    }
    const a = await new Promise<WorkerAnswer>((resolve, reject) => {
      this.queue.unshift({ req, who, worker: handle.worker, resolve, reject });
      this.pump();
    });
    if (a.error) throw revive(a.error);
    this.counts[req.op as 'apply' | 'diff']++;
    return a;
  }

  private release(handle: Handle): void {
    if (!this.held.delete(handle)) return;
    if (handle.worker === this.worker) handle.worker.postMessage({ op: 'release', handle: handle.id });
    this.maybeRecycle();
  }

  /** Requests waiting plus the one being worked on. */
  get pending(): number {
    return this.queue.length + (this.current ? 1 : 0);
  }

  private pump(): void {
    if (this.current || this.closed) return;
    const job = this.queue.shift();
    if (!job) return;
    this.current = job;
    if (job.worker && job.worker !== this.worker) {
      this.finish(
        undefined,
        new CniError(
          CNI_ERR.internal,
          `pod ${job.who}: the plan worker was restarted since this pod was planned; retry`,
        ),
      );
      return;
    }
    let w: Worker;
    try {
      w = this.worker ?? this.spawn();
    } catch (e) {
      this.finish(
        undefined,
        new CniError(CNI_ERR.internal, `pod ${job.who}: cannot start the plan worker: ${(e as Error).message}`),
      );
      return;
    }
    w.postMessage(job.req);
  }

  private spawn(): Worker {
    const w = new Worker(workerScript(), {
      workerData: { capture: this.capture, testHooks: this.opts.testHooks === true },
    });
    this.started++;
    w.unref(); // an idle worker never keeps the process alive
    w.on('message', (m: WorkerAnswer) => {
      if (m.id === 0 && m.priority) this.workerPriority = m.priority;
      if (!this.current || m.id !== this.current.req.id) return;
      this.lastHeapBytes = m.heapBytes ?? 0;
      this.finish(m, undefined);
    });
    const died = (why: string): void => {
      if (this.worker !== w) return;
      this.worker = undefined; // the next request starts a fresh worker; plans it held are gone
      for (const h of [...this.held]) if (h.worker === w) this.held.delete(h);
      const job = this.current;
      if (job)
        this.finish(
          undefined,
          new CniError(
            CNI_ERR.internal,
            `pod ${job.who}: the plan worker ${why} while working on it; the worker is restarted, retry the ADD`,
          ),
        );
    };
    w.on('error', (e) => died(`failed (${e.message})`));
    w.on('exit', (code) => died(`exited with code ${code}`));
    this.worker = w;
    return w;
  }

  private finish(a: WorkerAnswer | undefined, err: Error | undefined): void {
    const job = this.current!;
    this.current = undefined;
    if (err) job.reject(err);
    else job.resolve(a!);
    this.pump();
    // After the caller has taken its handle (a microtask later): only then is an idle worker idle.
    queueMicrotask(() => this.maybeRecycle());
  }

  /** Ends an idle worker whose heap stayed big; the next big pod starts a fresh one. */
  private maybeRecycle(): void {
    const w = this.worker;
    if (!w || this.current || this.queue.length > 0 || this.held.size > 0) return;
    if (this.lastHeapBytes <= (this.opts.recycleHeapBytes ?? RECYCLE_HEAP_BYTES)) return;
    this.worker = undefined; // before terminate: its exit is not a crash
    this.recycled++;
    void w.terminate();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0))
      j.reject(new CniError(CNI_ERR.tryAgainLater, `pod ${j.who}: the agent is shutting down`, '', 503));
    const w = this.worker;
    this.worker = undefined;
    this.held.clear();
    if (this.current)
      this.finish(
        undefined,
        new CniError(CNI_ERR.tryAgainLater, `pod ${this.current.who}: the agent is shutting down`, '', 503),
      );
    if (w) await w.terminate();
  }
}
