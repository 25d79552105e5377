// Worker thread entry: plans big pods (capture engine + nft tables) off the agent's event loop.
// agent → plan-worker: { id, pod } in, { id, plan } or { id, error } out. Pure; touches no kernel.
import { parentPort, workerData } from 'node:worker_threads';
import type { CaptureConfig } from '../capture/config.js';
import { buildPlan } from './plan-build.js';

const capture = (workerData as { capture: CaptureConfig }).capture;

parentPort?.on('message', (m: { id: number; pod: Record<string, unknown>; crash?: boolean }) => {
  // Test hook: lets the pool's crash recovery be tested against a real dying worker.
  if (m.crash === true && (workerData as { testHooks?: boolean }).testHooks === true) process.exit(7);
  try {
    parentPort!.postMessage({ id: m.id, plan: buildPlan(m.pod, capture) });
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) });
  }
});
