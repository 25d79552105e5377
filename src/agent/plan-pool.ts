// Big pods are planned in one worker thread so their seconds of CPU never hold up other pods'
// requests on the event loop: agent → plan-pool → plan-worker. Ordinary pods never come here.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CaptureConfig } from '../capture/config.js';
import type { RoutingPlan } from '../nft/route.js';
import { CNI_ERR, CniError } from './cni.js';
import { seedEncodedBatch } from '../nft/apply.js';
import { seedRulesDigest, type PodPlan } from './handler.js';

type Plan = PodPlan & { routing?: RoutingPlan };

/** Annotation list entries above which a pod is planned in the worker (ordinary pods have tens). */
export const BIG_POD_LIST_ENTRIES = 256;
/** Big pods waiting for the worker beyond the one being planned; more fail with "try again later". */
export const PLAN_QUEUE_LIMIT = 16;

/**
 * Total entries of the pod's comma-separated rule annotations: a cheap estimate, before planning,
 * of how much work its plan is (rules and set elements grow with it).
 */
export function listEntries(pod: Record<string, unknown>): number {
  const ann = (pod.metadata as { annotations?: unknown } | undefined)?.annotations;
  if (typeof ann !== 'object' || ann === null) return 0;
  let n = 0;
  for (const [k, v] of Object.entries(ann as Record<string, unknown>)) {
    if (typeof v !== 'string' || !(k.startsWith('traffic.sidecar.istio.io/') || k.startsWith('sidecar.istio.io/') || k === 'istio.io/reroute-virtual-interfaces')) continue;
    for (let i = v.indexOf(','); i !== -1; i = v.indexOf(',', i + 1)) n++;
    n++;
  }
  return n;
}

/**
 * The worker script beside this module (dist/agent/plan-worker.js in production). Under vitest
 * this module is src/agent/plan-pool.ts and no .js sits beside it: the build's copy is used.
 */
function workerScript(): URL {
  const here = new URL('./plan-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = new URL('../../dist/agent/plan-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new Error(`plan worker script not found at ${fileURLToPath(here)} or ${fileURLToPath(built)} (run npm run build)`);
}

/**
 * Structured clone turns the plan's Buffers (expression data, set keys, userdata) into plain
 * Uint8Arrays, which the netlink encoder cannot copy from: wrap each again (same memory, no copy).
 */
function reviveBuffers(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = reviveBuffers(v[i]);
  } else if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) o[k] = reviveBuffers(o[k]);
  }
  return v;
}

/** What the worker posts back: the plan, and for captured pods its digest and encoded batch. */
interface WorkerAnswer {
  id: number;
  plan?: Plan;
  error?: string;
  digest?: string;
  encoded?: { bytes: ArrayBuffer; descriptions: string[]; firstSeq: number };
}

interface Job {
  id: number;
  pod: Record<string, unknown>;
  who: string;
  crash?: boolean;
  resolve: (p: Plan) => void;
  reject: (e: Error) => void;
}

export class PlanPool {
  private worker?: Worker;
  private current?: Job;
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  /** Workers started so far (the first one included): restarts are this minus one. */
  started = 0;

  constructor(
    private readonly capture: CaptureConfig,
    private readonly opts: { queueLimit?: number; testHooks?: boolean } = {},
  ) {}

  /** Plans `pod` in the worker; `who` (namespace/name) names the pod in errors. */
  plan(pod: Record<string, unknown>, who: string): Promise<Plan> {
    return this.submit(pod, who, false);
  }

  /** Test hook: the worker exits while planning this request (needs testHooks). */
  planAndCrash(pod: Record<string, unknown>, who: string): Promise<Plan> {
    return this.submit(pod, who, true);
  }

  private submit(pod: Record<string, unknown>, who: string, crash: boolean): Promise<Plan> {
    if (this.closed) return Promise.reject(new CniError(CNI_ERR.tryAgainLater, `pod ${who}: the agent is shutting down`, '', 503));
    const limit = this.opts.queueLimit ?? PLAN_QUEUE_LIMIT;
    if (this.queue.length >= limit) {
      return Promise.reject(
        new CniError(CNI_ERR.tryAgainLater, `pod ${who}: ${this.queue.length} pods with large annotation lists are already waiting to be planned (limit ${limit}); try again later`, '', 503),
      );
    }
    return new Promise<Plan>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, pod, who, resolve, reject, ...(crash ? { crash } : {}) });
      this.pump();
    });
  }

  /** Requests waiting plus the one being planned. */
  get pending(): number {
    return this.queue.length + (this.current ? 1 : 0);
  }

  private pump(): void {
    if (this.current || this.closed) return;
    const job = this.queue.shift();
    if (!job) return;
    this.current = job;
    let w: Worker;
    try {
      w = this.worker ?? this.spawn();
    } catch (e) {
      this.finish(undefined, new CniError(CNI_ERR.internal, `pod ${job.who}: cannot start the plan worker: ${(e as Error).message}`));
      return;
    }
    w.postMessage({ id: job.id, pod: job.pod, ...(job.crash ? { crash: true } : {}) });
  }

  private spawn(): Worker {
    const w = new Worker(workerScript(), { workerData: { capture: this.capture, testHooks: this.opts.testHooks === true } });
    this.started++;
    w.unref(); // an idle worker never keeps the process alive
    w.on('message', (m: WorkerAnswer) => {
      if (!this.current || m.id !== this.current.id) return;
      // A planning error is the pod's bad input (like the in-thread planner's throw).
      if (m.error !== undefined || !m.plan) return this.finish(undefined, new Error(m.error ?? 'the plan worker answered without a plan'));
      const plan = reviveBuffers(m.plan) as Plan;
      if (plan.capture && m.digest && m.encoded) {
        seedRulesDigest(plan.tables, m.digest);
        seedEncodedBatch(plan.tables, { buffer: Buffer.from(m.encoded.bytes), descriptions: m.encoded.descriptions, firstSeq: m.encoded.firstSeq });
      }
      this.finish(plan, undefined);
    });
    const died = (why: string): void => {
      if (this.worker !== w) return;
      this.worker = undefined; // the next request starts a fresh worker
      const job = this.current;
      if (job) this.finish(undefined, new CniError(CNI_ERR.internal, `pod ${job.who}: the plan worker ${why} while planning it; the worker is restarted, retry the ADD`));
    };
    w.on('error', (e) => died(`failed (${e.message})`));
    w.on('exit', (code) => died(`exited with code ${code}`));
    this.worker = w;
    return w;
  }

  private finish(plan: Plan | undefined, err: Error | undefined): void {
    const job = this.current!;
    this.current = undefined;
    if (err) job.reject(err);
    else job.resolve(plan!);
    this.pump();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new CniError(CNI_ERR.tryAgainLater, `pod ${j.who}: the agent is shutting down`, '', 503));
    const w = this.worker;
    this.worker = undefined;
    if (this.current) this.finish(undefined, new CniError(CNI_ERR.tryAgainLater, `pod ${this.current.who}: the agent is shutting down`, '', 503));
    if (w) await w.terminate();
  }
}
