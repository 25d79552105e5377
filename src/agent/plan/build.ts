// Pod object → the handler's plan (pure): shared by the in-thread planner and the plan worker.
import type { CaptureConfig } from '../../capture/config.js';
import { decideCapture } from '../../capture/decision.js';
import { planRules } from '../../capture/plan.js';
import { podFromObject } from '../../capture/pod.js';
import type { TableContents } from '../../nft/model.js';
import type { RoutingPlan } from '../../rtnetlink/route.js';
import type { LocalPlan } from './types.js';

export function buildPlan(pod: Record<string, unknown>, capture: CaptureConfig): LocalPlan & { routing?: RoutingPlan } {
  const p = planRules(pod, capture);
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
