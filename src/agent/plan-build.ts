// Pod object → the handler's plan (pure): shared by the in-thread planner and the plan worker.
import { createHash } from 'node:crypto';
import type { CaptureConfig } from '../capture/config.js';
import { decideCapture } from '../capture/decision.js';
import { planPod as planCapture } from '../capture/plan.js';
import { podFromObject } from '../capture/pod.js';
import type { TableContents } from '../nft/model.js';
import type { RoutingPlan } from '../nft/route.js';
import { describeTable } from '../nft/ruleset.js';
import { ackLastMessageOnly, replaceTablesBatch, type Batch } from '../nft/transaction.js';
import type { LocalPlan } from './handler.js';

export function buildPlan(pod: Record<string, unknown>, capture: CaptureConfig): LocalPlan & { routing?: RoutingPlan } {
  const p = planCapture(pod, capture);
  if (!p.capture) return p;
  const rules = p.tables.reduce((n: number, t: TableContents) => n + t.rules.length, 0);
  return {
    capture: true,
    layout: p.layout,
    tables: p.tables,
    summary: { layout: p.layout, istioRules: p.settings.istioRules, tables: p.tables.length, rules },
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

/**
 * Whether a pod is captured, without building (or checking) its redirect settings: what the pod
 * index needs, cheap enough for a big pod on the event loop (checking 30,000 list entries takes
 * tens of ms). Planning decides first too, so a pod not captured gets exactly this answer; a
 * captured pod whose annotations planning would refuse is marked captured instead of left out, and
 * the shim fails closed for both.
 */
export function captureDecision(pod: Record<string, unknown>, capture: CaptureConfig): { capture: boolean } {
  return { capture: decideCapture(podFromObject(pod), capture).capture };
}
