// Worker thread entry: plans big pods (capture engine + nft tables) off the agent's event loop.
// agent → plan-worker: { id, pod } in, { id, plan } or { id, error } out. Pure; touches no kernel.
import { parentPort, workerData } from 'node:worker_threads';
import type { CaptureConfig } from '../capture/config.js';
import { buildPlan, computeRulesDigest, encodeCreateBatch } from './plan-build.js';

const capture = (workerData as { capture: CaptureConfig }).capture;

parentPort?.on('message', (m: { id: number; pod: Record<string, unknown>; crash?: boolean }) => {
  // Test hook: lets the pool's crash recovery be tested against a real dying worker.
  if (m.crash === true && (workerData as { testHooks?: boolean }).testHooks === true) process.exit(7);
  try {
    const plan = buildPlan(m.pod, capture);
    if (!plan.capture) {
      parentPort!.postMessage({ id: m.id, plan });
      return;
    }
    // Digest and netlink batch are made here too: they are most of the rest of a big pod's CPU.
    const batch = encodeCreateBatch(plan.tables);
    const bytes = batch.buffer.byteOffset === 0 && batch.buffer.byteLength === batch.buffer.buffer.byteLength ? batch.buffer.buffer : batch.buffer.buffer.slice(batch.buffer.byteOffset, batch.buffer.byteOffset + batch.buffer.byteLength);
    const encoded = { bytes, descriptions: batch.descriptions, firstSeq: batch.firstSeq };
    // The encoded bytes move to the agent thread (transferred, not copied).
    parentPort!.postMessage({ id: m.id, plan, digest: computeRulesDigest(plan.tables), encoded }, [bytes as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) });
  }
});
