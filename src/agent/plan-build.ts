// Pod object → the handler's plan (pure): shared by the in-thread planner and the plan worker.
import type { CaptureConfig } from '../capture/config.js';
import { planPod as planCapture } from '../capture/plan.js';
import type { TableContents } from '../nft/model.js';
import type { RoutingPlan } from '../nft/route.js';
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
