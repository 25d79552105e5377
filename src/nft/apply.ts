// Programs tables into a network namespace as one transaction, and reads a namespace's tables back.
// The only file of src/nft that does I/O, through src/kernel.
import {
  applyNetlinkBatch,
  applyNetlinkBatchInline,
  MAX_DUMP_BYTES,
  netlinkDumps,
  NetlinkBatchError,
  NETLINK_NETFILTER,
  NETLINK_ROUTE,
} from '../kernel/index.js';
import { routingBatch, type RoutingPlan } from '../rtnetlink/route.js';
import type { TableContents, Table } from './model.js';
import { NetlinkWriter } from './netlink.js';
import { writeDumpRequest } from './messages.js';
import { assembleRuleset } from './ruleset.js';
import {
  ackLastMessageOnly,
  deleteTablesBatch,
  replaceTablesBatch,
  type Batch,
  type ReplaceMode,
} from './transaction.js';
import { FAMILY, type TableFamily } from './constants.js';

/** The kernel refused the transaction; nothing of it was applied. Names the failing message. */
export class TransactionError extends Error {
  constructor(
    readonly netns: string,
    readonly index: number,
    readonly description: string,
    readonly code: string,
    readonly errno: number,
    cause: Error,
  ) {
    super(
      `nftables transaction in ${netns} rejected at message #${index} (${description}): ${code} — ${cause.message}`,
      { cause },
    );
    this.name = 'TransactionError';
  }
}

/**
 * Batches up to this size are committed on the calling thread. An ordinary pod's batch is a few
 * KiB and its commit takes a fraction of a millisecond: less than the thread pool's two cross-thread
 * wake-ups (0.1–2 ms each on an idle or busy node, bench/phases.ts). Bigger batches (long annotation
 * lists) take milliseconds in the kernel and go to the thread pool so the event loop never waits.
 */
export const INLINE_COMMIT_MAX_BYTES = 32 * 1024;

/**
 * Sends a batch; `inline` allows a small one on the calling thread. Never inline for a batch that
 * deletes tables: the kernel then waits for an RCU grace period (tens of milliseconds).
 */
async function send(netnsPath: string, batch: Batch, inline = false): Promise<number> {
  try {
    const r =
      inline && batch.buffer.length <= INLINE_COMMIT_MAX_BYTES
        ? applyNetlinkBatchInline(netnsPath, batch.buffer)
        : await applyNetlinkBatch(netnsPath, batch.buffer);
    return r.messages;
  } catch (e) {
    if (e instanceof NetlinkBatchError) {
      const description = batch.descriptions[e.index] ?? `message #${e.index}`;
      throw new TransactionError(netnsPath, e.index, description, e.code, e.errno, e);
    }
    throw e;
  }
}

/** Encoded fast-path batches by ruleset object: a plan shared by many pods is encoded once. */
const encoded = new WeakMap<readonly TableContents[], Batch>();

/** The bytes of a fresh namespace's one-round-trip transaction (also what the bench's kernel floor replays). */
export function createBatch(contents: readonly TableContents[]): Batch {
  let fast = encoded.get(contents);
  if (!fast) {
    fast = ackLastMessageOnly(replaceTablesBatch(contents, 1, 'create'));
    encoded.set(contents, fast);
  }
  return fast;
}

/**
 * Replaces the given tables in the namespace atomically: all of them change, or none. A fresh pod
 * namespace takes one round trip (exclusive create); when a table already exists the kernel says
 * EEXIST, nothing has changed, and the whole set is replaced in a second transaction.
 */
export async function applyTables(
  netnsPath: string,
  contents: readonly TableContents[],
): Promise<{ messages: number; bytes: number; mode: ReplaceMode }> {
  const fast = createBatch(contents);
  try {
    const messages = await send(netnsPath, fast, true);
    return { messages, bytes: fast.buffer.length, mode: 'create' };
  } catch (e) {
    if (!(e instanceof TransactionError && e.code === 'EEXIST' && e.description.startsWith('add table '))) throw e;
  }
  const full = ackLastMessageOnly(replaceTablesBatch(contents, 1, 'replace'));
  const messages = await send(netnsPath, full);
  return { messages, bytes: full.buffer.length, mode: 'replace' };
}

function dumpRequest(
  kind: Parameters<typeof writeDumpRequest>[1],
  set?: { family: Table['family']; table: string; name: string },
): Buffer {
  const w = new NetlinkWriter(64);
  writeDumpRequest(w, kind, 1, set?.family ?? 'unspec', set);
  return w.toBuffer();
}

/**
 * Reads every table, chain, set (with elements) and rule in the namespace, at most `maxDumpBytes` of
 * netlink replies in all (MAX_DUMP_BYTES by default): a namespace holding more fails with an error
 * naming the path and the limit, rather than growing the agent's heap.
 */
export async function readTables(netnsPath: string, opts: { maxDumpBytes?: number } = {}): Promise<TableContents[]> {
  const limit = opts.maxDumpBytes ?? MAX_DUMP_BYTES;
  const bounded = async (requests: Buffer[], left: number): Promise<Buffer[]> => {
    try {
      return await netlinkDumps(netnsPath, requests, NETLINK_NETFILTER, left);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'E2BIG') throw e;
      const err = new Error(
        `nftables of network namespace ${netnsPath} dump to more than ${limit} bytes, the limit ` +
          'per namespace: not read',
        { cause: e },
      );
      throw Object.assign(err, { code: 'E2BIG' });
    }
  };
  const kinds = ['GETTABLE', 'GETCHAIN', 'GETSET', 'GETRULE'] as const;
  const replies = await bounded(
    kinds.map((k) => dumpRequest(k)),
    limit,
  );
  const tables = assembleRuleset(replies);
  const sets = tables.flatMap((t) => t.sets);
  if (sets.length === 0) return tables;
  const used = replies.reduce((n, b) => n + b.length, 0);
  const elems = await bounded(
    sets.map((s) => dumpRequest('GETSETELEM', s)),
    Math.max(1, limit - used),
  );
  return assembleRuleset([...replies, ...elems]);
}

/** What one applyRouting call added (and nothing that was there before), to take back. */
export interface RoutingUndo {
  messages: Buffer[];
  descriptions: string[];
}

/**
 * Programs the pod's routing needs (TPROXY policy rule + local route, loopback addresses) over
 * rtnetlink. Each message stands alone (rtnetlink has no transactions) and is an exclusive add: one
 * already there (EEXIST) is what we wanted, so a repeated apply succeeds. Returns what this call
 * added, for undoRouting; when a message fails, what the call had added is removed before throwing.
 */
export async function applyRouting(netnsPath: string, plan: RoutingPlan): Promise<RoutingUndo> {
  const batch = routingBatch(plan);
  if (!batch) return { messages: [], descriptions: [] };
  let failed: { index: number; code: string; extack: string }[] = [];
  try {
    await applyNetlinkBatch(netnsPath, batch.buffer, NETLINK_ROUTE);
  } catch (e) {
    if (!(e instanceof NetlinkBatchError)) throw e;
    failed = e.errors;
  }
  const refused = new Set(failed.map((x) => x.index));
  const added = batch.undo.map((_, i) => i).filter((i) => !refused.has(i));
  const undo = {
    messages: added.map((i) => batch.undo[i]!).reverse(),
    descriptions: added.map((i) => batch.descriptions[i]!).reverse(),
  };
  const real = failed.filter((x) => x.code !== 'EEXIST');
  if (real.length === 0) return undo;
  await undoRouting(netnsPath, undo);
  const first = real[0]!;
  throw new Error(
    `routing in ${netnsPath}: ${batch.descriptions[first.index] ?? `message #${first.index}`} failed: ${first.code}${first.extack ? ` (${first.extack})` : ''}`,
  );
}

/** Removes what applyRouting added. Entries already gone (ENOENT, ESRCH, EADDRNOTAVAIL) are fine. */
export async function undoRouting(netnsPath: string, undo: RoutingUndo): Promise<void> {
  if (undo.messages.length === 0) return;
  try {
    await applyNetlinkBatch(netnsPath, Buffer.concat(undo.messages), NETLINK_ROUTE);
  } catch (e) {
    if (!(e instanceof NetlinkBatchError)) throw e;
    const real = e.errors.filter((x) => !['ENOENT', 'ESRCH', 'EADDRNOTAVAIL'].includes(x.code));
    if (real.length > 0)
      throw new Error(
        `undoing routing in ${netnsPath}: '${undo.descriptions[real[0]!.index]}' could not be removed: ${real[0]!.code}`,
      );
  }
}

/** Deletes the labelled tables (CNI DEL) in one transaction; absent tables are not an error. Throws naming a bad label. */
export async function removeTables(netnsPath: string, labels: readonly string[]): Promise<void> {
  if (labels.length === 0) return;
  const tables = labels.map((l) => {
    const [family, name, extra] = l.split(' ');
    if (!family || !name || extra !== undefined || family === 'unspec' || !(family in FAMILY))
      throw new Error(`table label '${l}' is not 'family name'`);
    return { family: family as TableFamily, name };
  });
  await applyNetlinkBatch(netnsPath, deleteTablesBatch(tables).buffer);
}
