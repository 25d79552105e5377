// Pod object → the handler's plan (pure): shared by the in-thread planner and the plan worker.
import { createHash } from 'node:crypto';
import type { CaptureConfig } from '../capture/config.js';
import { planPod as planCapture } from '../capture/plan.js';
import type { TableContents } from '../nft/model.js';
import type { RoutingPlan } from '../nft/route.js';
import { describeTable } from '../nft/ruleset.js';
import { ackLastMessageOnly, replaceTablesBatch, type Batch } from '../nft/transaction.js';
import type { PodPlan } from './handler.js';

export function buildPlan(pod: Record<string, unknown>, capture: CaptureConfig): PodPlan & { routing?: RoutingPlan } {
  const p = planCapture(pod, capture);
  if (!p.capture) return p;
  const rules = p.tables.reduce((n: number, t: TableContents) => n + t.rules.length, 0);
  return {
    capture: true,
    layout: p.layout,
    tables: p.tables,
    summary: { layout: p.layout, tables: p.tables.length, rules },
    ...(p.routing ? { routing: p.routing } : {}),
  };
}

/** sha256 of the tables' canonical description: what a pod record keeps to notice changed rules. */
export function computeRulesDigest(tables: readonly TableContents[]): string {
  const h = createHash('sha256');
  for (const t of tables) for (const line of describeTable(t)) h.update(line).update('\n');
  return h.digest('hex');
}

/** The batch a fresh namespace takes (apply.ts applyTables' first attempt), built ahead of time. */
export function encodeCreateBatch(tables: readonly TableContents[]): Batch {
  return ackLastMessageOnly(replaceTablesBatch(tables, 1, 'create'));
}
