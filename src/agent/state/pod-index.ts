// The node-local pod index: every pod on this node with its capture decision, on disk for the shim
// to read when the agent is down, so a pod known to need nothing still starts during an outage.
// Format (ASCII, one record a line, made for a small C reader that must detect truncation):
//
//   meshcni-pod-index 1
//   pods <n>
//   <S|C> <namespace> <name> <uid>        (S: not captured, C: captured), n lines
//   end <fnv1a32 of every byte before this line, 8 lowercase hex digits>
//
// Anything else (wrong version, count mismatch, bad checksum, over a bound) makes the whole file
// unusable to the shim, which then fails closed exactly as without an index.
import { removeStaleTemps, writeFileAtomic } from '../../files/atomic-write.js';

export const INDEX_FILE_NAME = 'pod-index';
export const INDEX_MAGIC = 'meshcni-pod-index 1';
/** Bounds the shim enforces too (native/shim/index.c): keep them in step. */
export const INDEX_MAX_PODS = 10000;
export const INDEX_MAX_BYTES = 4 << 20;
const FIELD = /^[A-Za-z0-9._-]+$/;
const MAX_LEN = { namespace: 63, name: 253, uid: 64 } as const;

export interface IndexEntry {
  namespace: string;
  name: string;
  uid: string;
  captured: boolean;
}

/** FNV-1a, 32 bits: catches truncation and torn writes; the file is root-only, so no adversary. */
export function fnv1a32(data: Buffer): number {
  let h = 0x811c9dc5;
  for (const b of data) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

/** Why an entry cannot be written in a form the shim can match, or null when it can. */
export function entryProblem(e: IndexEntry): string | null {
  for (const k of ['namespace', 'name', 'uid'] as const) {
    const v = e[k];
    if (!v || v.length > MAX_LEN[k] || !FIELD.test(v))
      return `${k} ${JSON.stringify(v)} is empty, longer than ${MAX_LEN[k]} or has characters outside [A-Za-z0-9._-]`;
  }
  return null;
}

/** The file's bytes. Entries are sorted so an unchanged pod set gives identical bytes. */
export function encodeIndex(entries: readonly IndexEntry[]): Buffer {
  if (entries.length > INDEX_MAX_PODS)
    throw new Error(`pod index: ${entries.length} pods is more than the ${INDEX_MAX_PODS} the shim reads`);
  const lines = entries
    .map((e) => {
      const p = entryProblem(e);
      if (p) throw new Error(`pod index: pod ${e.namespace}/${e.name}: ${p}`);
      return `${e.captured ? 'C' : 'S'} ${e.namespace} ${e.name} ${e.uid}`;
    })
    .sort();
  const body = Buffer.from(`${INDEX_MAGIC}\npods ${lines.length}\n${lines.map((l) => l + '\n').join('')}`, 'ascii');
  const out = Buffer.concat([body, Buffer.from(`end ${fnv1a32(body).toString(16).padStart(8, '0')}\n`, 'ascii')]);
  if (out.length > INDEX_MAX_BYTES)
    throw new Error(`pod index: ${out.length} bytes is more than the ${INDEX_MAX_BYTES} the shim reads`);
  return out;
}

/** Temp files of index writes: `.pod-index.<pid>.<hex>.tmp` beside the index (the shim reads only the index). */
/**
 * The bootstrap gate of CNI STATUS (native/shim/index.h keeps the same names): written when the
 * agent first gets ready on this node; while it and a whole index exist, the shim answers STATUS
 * ready through an agent outage. It lives in the state dir (tmpfs): a rebooted node starts gated.
 */
export const READY_MARKER_SUFFIX = '.ready';
export const READY_MARKER_TEXT = 'meshcni-ready 1\n';

/** Writes the ready marker next to the index at `indexPath` (atomically, root-only). */
export function writeReadyMarker(indexPath: string): Promise<void> {
  return writeFileAtomic(`${indexPath}${READY_MARKER_SUFFIX}`, Buffer.from(READY_MARKER_TEXT), {
    mode: 0o600,
    tempPrefix: `${INDEX_TEMP_PREFIX}${process.pid}.`,
    tempSuffix: INDEX_TEMP_SUFFIX,
  });
}

export const INDEX_TEMP_PREFIX = `.${INDEX_FILE_NAME}.`;
export const INDEX_TEMP_SUFFIX = '.tmp';

/** Replaces the file so the shim sees the old or the new index, never a mix; root-only (0600). */
export function writeIndexFile(path: string, data: Buffer): Promise<void> {
  return writeFileAtomic(path, data, {
    mode: 0o600,
    tempPrefix: `${INDEX_TEMP_PREFIX}${process.pid}.`,
    tempSuffix: INDEX_TEMP_SUFFIX,
  });
}

/** Removes index temp files a killed agent left in `dir`; returns their names. */
export function removeIndexTemps(dir: string): Promise<string[]> {
  return removeStaleTemps(dir, INDEX_TEMP_PREFIX, INDEX_TEMP_SUFFIX);
}
