// The agent's plan of a pod, as its rooms pass it around: the capture decision, with the tables to
// program (or, for a big pod, the plan worker's handle on them); the digest a record keeps and the
// diff CHECK and reconcile make. The agent's plan room: planner, build, pool, worker and apply sit here.
import { createHash } from 'node:crypto';
import type { TableContents } from '../../nft/model.js';
import { describeTable, diffTables } from '../../nft/ruleset.js';

/**
 * A big pod's rules, kept by the plan worker: the event loop holds only what an ADD records, and
 * reads, compares and programs the rules through the worker.
 */
export interface HeldRules {
  digest: string;
  /** The tables as `family name` (what DEL removes). */
  labels: string[];
  /** Reads the namespace and compares it with the rules (diffTables' words); throws on an unreadable netns. */
  diff(netns: string): Promise<string[]>;
  /** Programs routes and the one transaction, all or nothing (as applyPlan does). */
  apply(netns: string): Promise<void>;
  /** No more diff or apply: the worker may drop the rules. */
  release(): void;
}

/** The capture decision for a pod, with what to program when captured (a big pod's: held by the plan worker). */
export type PodPlan =
  | { capture: true; layout: string; tables: TableContents[]; summary: Record<string, unknown> }
  | { capture: true; layout: string; held: HeldRules; summary: Record<string, unknown> }
  | { capture: false; reason: string };

/** A plan made on this thread: the tables themselves (ordinary pods, the CLI, the plan worker's own). */
export type LocalPlan = Exclude<PodPlan, { held: HeldRules }>;

export type CapturePlan = Extract<PodPlan, { capture: true }>;

const digests = new WeakMap<readonly TableContents[], string>();

/** sha256 of the tables' canonical description (memoised per ruleset object: plans are shared). */
export function rulesDigest(tables: readonly TableContents[]): string {
  let d = digests.get(tables);
  if (!d) {
    d = computeRulesDigest(tables);
    digests.set(tables, d);
  }
  return d;
}

/** The digest a pod record keeps for a plan. */
export function planDigest(p: CapturePlan): string {
  return 'held' in p ? p.held.digest : rulesDigest(p.tables);
}

/** The differences between a plan and what `netns` holds; throws when the netns cannot be read. */
export async function planDiff(
  p: CapturePlan,
  netns: string,
  readTables: (netns: string) => Promise<TableContents[]>,
): Promise<string[]> {
  return 'held' in p ? p.held.diff(netns) : diffTables(p.tables, await readTables(netns));
}

/** Lets the plan worker drop a big plan's rules once the request is done with them. */
export function releasePlan(p: PodPlan): void {
  if (p.capture && 'held' in p) p.held.release();
}

/** sha256 of the tables' canonical description: what a pod record keeps to notice changed rules. */
export function computeRulesDigest(tables: readonly TableContents[]): string {
  const h = createHash('sha256');
  for (const t of tables) for (const line of describeTable(t)) h.update(line).update('\n');
  return h.digest('hex');
}
