// Room agent/state: what the agent keeps on disk — per-attachment records (here) and the pod index for the shim.
// What the agent did, per attachment, kept on disk so a restarted agent still knows: one small JSON
// file per container, written atomically (write + rename). A failed write leaves no file behind
// and no record in memory; the error names the state directory and the errno.
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { containerIdProblem } from '../cni.js';

export interface PodRecord {
  containerId: string;
  ifName: string;
  /** The runtime's CNI_NETNS; '' for a pod captured in place, which netnsId identifies instead. */
  netns: string;
  /** `dev:ino` of a netns found by scanning: proven again on every pass, never kept as a /proc path. */
  netnsId?: string;
  namespace: string;
  name: string;
  uid?: string;
  /** The pod's IPs from the runtime's ADD result: reconcile plans with them, as the ADD did. */
  podIps?: string[];
  /** sha256 of the programmed tables' canonical description. */
  rulesDigest: string;
  layout: string;
  /** The nftables tables programmed, as `family name` (what DEL removes); absent in old records. */
  tables?: string[];
  capturedAt: string;
}

/** A state directory operation failed: `code` is the errno name (ENOSPC, EROFS, …). */
export class StateError extends Error {
  constructor(
    readonly code: string,
    readonly path: string,
    what: string,
    cause: unknown,
  ) {
    super(
      `state directory ${path}: ${what} failed: ${code}${code === 'EROFS' ? ' (read-only file system)' : code === 'ENOSPC' ? ' (no space left on device)' : ''}`,
      { cause },
    );
    this.name = 'StateError';
  }
}

const errnoOf = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? 'EIO';

/**
 * Why a directory the agent trusts (its state, the pods directory) could be swapped by someone else,
 * or null. The directory must be owned by root or by the agent's user and writable by nobody else;
 * each directory above it must be owned by root or the agent's user and, if others may write it, be
 * sticky (like /tmp), so nobody else can rename what it holds. The shim checks the pod index's
 * directory by the same rule (index.c).
 */
export function trustedDirProblem(path: string, what: string): string | null {
  const uid = process.getuid?.() ?? 0;
  const owned = (u: number): boolean => u === 0 || u === uid;
  let dir = resolve(path);
  const st = statSync(dir);
  if (!st.isDirectory()) return `${what} ${dir} is not a directory`;
  if (!owned(st.uid)) return `${what} ${dir} is owned by uid ${st.uid}, not by root or the agent (uid ${uid})`;
  if ((st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o7777).toString(8);
    return `${what} ${dir} has mode ${mode}: writable by group or others; make it 0700 or 0755`;
  }
  while (dir !== dirname(dir)) {
    dir = dirname(dir);
    const up = statSync(dir);
    if (!owned(up.uid)) return `${what} ${path}: its parent ${dir} is owned by uid ${up.uid}, not by root or the agent`;
    if ((up.mode & 0o022) !== 0 && (up.mode & 0o1000) === 0) {
      const mode = (up.mode & 0o7777).toString(8);
      return `${what} ${path}: its parent ${dir} has mode ${mode}, writable by others and not sticky`;
    }
  }
  return null;
}

export class PodStateStore {
  private readonly records = new Map<string, PodRecord>();
  private readonly dir: string;
  private seq = 0;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'pods');
  }

  /**
   * Creates the directory (0700), checks it is writable (a read-only state dir fails here, not on
   * the first ADD), removes temp files a killed agent left, and loads every record; unreadable
   * files are returned as problems.
   */
  load(): { loaded: number; problems: string[]; removedTemp: number } {
    try {
      // Recursive mkdir reports ENOENT on a read-only file system; the last step alone says EROFS.
      mkdirSync(dirname(this.dir), { recursive: true, mode: 0o700 });
      if (!existsSync(this.dir)) mkdirSync(this.dir, { mode: 0o700 });
      accessSync(this.dir, constants.W_OK);
    } catch (e) {
      throw new StateError(errnoOf(e), this.dir, 'creating or writing', e);
    }
    const problem =
      trustedDirProblem(dirname(this.dir), 'state directory') ?? trustedDirProblem(this.dir, 'state directory');
    if (problem) throw new Error(problem);
    const problems: string[] = [];
    let removedTemp = 0;
    for (const f of readdirSync(this.dir)) {
      if (f.endsWith('.tmp')) {
        rmSync(join(this.dir, f), { force: true });
        removedTemp++;
        continue;
      }
      if (!f.endsWith('.json')) continue;
      try {
        const r = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as PodRecord;
        if (typeof r.containerId !== 'string' || containerIdProblem(r.containerId) !== null)
          throw new Error('no valid containerId');
        this.records.set(r.containerId, r);
      } catch (e) {
        problems.push(`${f}: ${(e as Error).message}`);
      }
    }
    return { loaded: this.records.size, problems, removedTemp };
  }

  private path(containerId: string): string {
    const problem = containerIdProblem(containerId);
    if (problem) throw new Error(`${problem}: not usable as a state file name`);
    return join(this.dir, `${containerId}.json`);
  }

  get(containerId: string): PodRecord | undefined {
    return this.records.get(containerId);
  }

  all(): PodRecord[] {
    return [...this.records.values()];
  }

  /**
   * Records a pod (atomically: temp file + rename). On failure nothing is left, on disk or here.
   * Synchronous on purpose: a record is a few hundred bytes in a tmpfs (`/var/run`) with no fsync,
   * tens of microseconds; the promise API would cost four thread-pool round trips on every ADD's
   * answer path (the largest phase of an ADD under load, see bench/phases.ts).
   */
  async put(r: PodRecord): Promise<void> {
    const p = this.path(r.containerId);
    const tmp = `${p}.${process.pid}.${++this.seq}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify(r), { mode: 0o600 });
      renameSync(tmp, p);
    } catch (e) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // the original error is the one to report
      }
      throw new StateError(errnoOf(e), this.dir, `writing the record of container ${r.containerId}`, e);
    }
    this.records.set(r.containerId, r);
  }

  /** Forgets a pod. The memory record always goes; a file that cannot be removed is an error. */
  async delete(containerId: string): Promise<boolean> {
    const had = this.records.delete(containerId);
    try {
      rmSync(this.path(containerId), { force: true });
    } catch (e) {
      throw new StateError(errnoOf(e), this.dir, `removing the record of container ${containerId}`, e);
    }
    return had;
  }
}
