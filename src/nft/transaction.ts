// One atomic nf_tables transaction: a batch that replaces whole tables (delete-if-present + create).
import { FAMILY, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES } from './constants.js';
import type { Table, TableContents } from './model.js';
import {
  writeDelTable,
  writeNewChain,
  writeNewRule,
  writeNewSet,
  writeNewSetElems,
  SET_ELEMS_PER_MESSAGE,
  writeNewTable,
} from './messages.js';
import { NLM_F_ACK, NLM_F_REQUEST, NetlinkWriter } from './netlink.js';

/** An encoded batch plus a description of every message, indexed as the kernel's errors are. */
export interface Batch {
  buffer: Buffer;
  /** descriptions[i] names message #i (0 = batch begin). */
  descriptions: string[];
  /** Sequence number of message #0; message #i has seq firstSeq + i. */
  firstSeq: number;
}

/** Collects messages between a batch begin and end, numbering them. */
class BatchWriter {
  private readonly w = new NetlinkWriter(8192);
  private readonly descriptions: string[] = [];

  constructor(private readonly firstSeq: number) {
    this.control(NFNL_MSG_BATCH_BEGIN, 'batch begin');
  }

  private control(type: number, description: string): void {
    this.w.beginMessage(type, NLM_F_REQUEST, this.nextSeq(), FAMILY.unspec, NFNL_SUBSYS_NFTABLES);
    this.w.endMessage();
    this.descriptions.push(description);
  }

  private nextSeq(): number {
    return this.firstSeq + this.descriptions.length;
  }

  add(description: string, write: (w: NetlinkWriter, seq: number) => void): void {
    write(this.w, this.nextSeq());
    this.descriptions.push(description);
  }

  finish(): Batch {
    this.control(NFNL_MSG_BATCH_END, 'batch end');
    return { buffer: this.w.toBuffer(), descriptions: this.descriptions, firstSeq: this.firstSeq };
  }
}

const tableLabel = (t: Table): string => `${t.family} ${t.name}`;

/**
 * How a replace treats tables that may already exist:
 * - `create`: assume none exists and create each one exclusively (NLM_F_EXCL). A table that is
 *   there after all fails the batch with EEXIST and nothing changes; the caller then replaces.
 *   This is the fast path for a fresh pod namespace: deleting anything makes the kernel wait for an
 *   RCU grace period at commit (~15 ms here), creating does not.
 * - `replace`: `add table` (a no-op if present), `delete table`, then the new table. Idempotent on
 *   every nf_tables kernel (no DESTROYTABLE needed).
 */
export type ReplaceMode = 'create' | 'replace';

/** Replaces each table wholesale in one transaction with its chains, sets and rules; all or nothing. */
export function replaceTablesBatch(
  contents: readonly TableContents[],
  firstSeq = 1,
  mode: ReplaceMode = 'replace',
): Batch {
  const b = new BatchWriter(firstSeq);
  if (mode === 'replace') {
    for (const { table } of contents) {
      b.add(`ensure table ${tableLabel(table)}`, (w, seq) =>
        writeNewTable(w, seq, { family: table.family, name: table.name }),
      );
      b.add(`delete table ${tableLabel(table)}`, (w, seq) => writeDelTable(w, seq, table));
    }
  }
  for (const { table, chains, sets, rules } of contents) {
    const label = tableLabel(table);
    b.add(`add table ${label}`, (w, seq) => writeNewTable(w, seq, table, mode === 'create'));
    for (const c of chains) b.add(`add chain ${label} ${c.name}`, (w, seq) => writeNewChain(w, seq, c));
    for (const s of sets) {
      b.add(`add set ${label} ${s.name}`, (w, seq) => writeNewSet(w, seq, s));
      // Large sets go in several messages of the same transaction: one attribute cannot hold them.
      for (let i = 0; i < s.elements.length; i += SET_ELEMS_PER_MESSAGE) {
        const part = s.elements.slice(i, i + SET_ELEMS_PER_MESSAGE);
        const what =
          part.length === s.elements.length
            ? `${part.length} elements`
            : `elements ${i + 1}–${i + part.length} of ${s.elements.length}`;
        b.add(`add ${what} to set ${label} ${s.name}`, (w, seq) => writeNewSetElems(w, seq, s, part));
      }
    }
    const perChain = new Map<string, number>();
    for (const r of rules) {
      const n = (perChain.get(r.chain) ?? 0) + 1;
      perChain.set(r.chain, n);
      b.add(`add rule ${label} ${r.chain} #${n}`, (w, seq) => writeNewRule(w, seq, r));
    }
  }
  return b.finish();
}

/** Deletes the given tables if present, in one transaction (absent tables are not an error). */
export function deleteTablesBatch(tables: readonly Table[], firstSeq = 1): Batch {
  const b = new BatchWriter(firstSeq);
  for (const t of tables) {
    b.add(`ensure table ${tableLabel(t)}`, (w, seq) => writeNewTable(w, seq, { family: t.family, name: t.name }));
    b.add(`delete table ${tableLabel(t)}`, (w, seq) => writeDelTable(w, seq, t));
  }
  return b.finish();
}

/**
 * Asks the kernel to acknowledge only the batch's last message. nfnetlink reports every failing
 * message anyway and processes a batch in order, so one ACK for the last message (after any
 * errors) tells the whole outcome; an ACK per message would cost a datagram and a wake-up each.
 */
export function ackLastMessageOnly(batch: Batch): Batch {
  const buf = Buffer.from(batch.buffer);
  const offsets: number[] = [];
  for (let off = 0; off + 16 <= buf.length;) {
    const len = buf.readUInt32LE(off);
    if (len < 16) break;
    offsets.push(off);
    off += (len + 3) & ~3;
  }
  // Inner messages are all but the batch begin (first) and batch end (last).
  const inner = offsets.slice(1, -1);
  inner.forEach((off, i) => {
    const flags = buf.readUInt16LE(off + 6);
    buf.writeUInt16LE(i === inner.length - 1 ? flags | NLM_F_ACK : flags & ~NLM_F_ACK, off + 6);
  });
  return { ...batch, buffer: buf };
}
