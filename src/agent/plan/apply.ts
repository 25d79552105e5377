// Programming a plan into a pod's namespace: the event loop does it for ordinary plans, the plan
// worker for the big pods' plans it holds (agent → plan/apply → nft). One function for both.
import { applyRouting, applyTables, undoRouting } from '../../nft/apply.js';
import type { RoutingPlan } from '../../rtnetlink/route.js';
import type { CapturePlan } from './types.js';

/**
 * Programs a plan: routes first (TPROXY needs them before packets are marked), then the one
 * nftables transaction. If the transaction fails, the routes, rules and addresses this call added
 * are removed again, so the pod sees all of the plan or none of it. A plan held by the plan worker
 * is programmed there, the same way.
 */
export async function applyPlan(netns: string, plan: CapturePlan & { routing?: RoutingPlan }): Promise<void> {
  if ('held' in plan) return plan.held.apply(netns);
  const added = plan.routing ? await applyRouting(netns, plan.routing) : null;
  try {
    await applyTables(netns, plan.tables);
  } catch (e) {
    if (added)
      await undoRouting(netns, added).catch((u: unknown) => ((e as Error).message += `; and ${(u as Error).message}`));
    throw e;
  }
}
