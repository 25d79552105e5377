// Keeps the on-disk pod index in step with the pod source: after every change (debounced) each pod's
// decision is made with the same planner and namespace exclusions the CNI ADD uses, and the file is
// rewritten only when its bytes change.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { PodPlan } from '../plan/types.js';
import {
  encodeIndex,
  entryProblem,
  INDEX_FILE_NAME,
  INDEX_MAX_PODS,
  removeIndexTemps,
  writeIndexFile,
  type IndexEntry,
} from './pod-index.js';
import { podKeyOf, type PodSource } from '../pods/source.js';

export interface PodIndexSyncDeps {
  stateDir: string;
  pods: PodSource;
  /** The ADD's capture decision (for big pods, without building their rules); throws on bad annotations. */
  planPod: (pod: Record<string, unknown>) => Pick<PodPlan, 'capture'>;
  excludeNamespaces: readonly string[];
  log: Logger;
  debounceMs?: number;
}

/** Each pod's decision as the ADD would make it; pods the shim could never match are left out (fail closed). */
export function indexEntries(
  pods: readonly Record<string, unknown>[],
  deps: Pick<PodIndexSyncDeps, 'planPod' | 'excludeNamespaces'>,
): { entries: IndexEntry[]; left: string[] } {
  const entries: IndexEntry[] = [];
  const left: string[] = [];
  for (const obj of pods) {
    const key = podKeyOf(obj);
    if (!key) continue;
    const who = `${key.namespace}/${key.name}`;
    if (!key.uid) {
      left.push(`${who}: no metadata.uid`);
      continue;
    }
    let captured: boolean;
    if (deps.excludeNamespaces.includes(key.namespace)) captured = false;
    else {
      try {
        captured = deps.planPod(obj).capture;
      } catch (e) {
        left.push(`${who}: ${(e as Error).message}`); // its ADD fails too; the shim must not pass it
        continue;
      }
    }
    const entry = { namespace: key.namespace, name: key.name, uid: key.uid, captured };
    const problem = entryProblem(entry);
    if (problem) left.push(`${who}: ${problem}`);
    else entries.push(entry);
  }
  if (entries.length > INDEX_MAX_PODS) {
    // Captured pods fail closed either way: drop them first so every skipped pod keeps its entry.
    entries.sort((a, b) => Number(a.captured) - Number(b.captured));
    for (const e of entries.splice(INDEX_MAX_PODS))
      left.push(`${e.namespace}/${e.name}: over the index bound of ${INDEX_MAX_PODS} pods`);
  }
  return { entries, left };
}

export class PodIndexSync {
  readonly path: string;
  private timer?: NodeJS.Timeout;
  private last?: Buffer;
  private writing: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly deps: PodIndexSyncDeps) {
    this.path = join(deps.stateDir, INDEX_FILE_NAME);
  }

  /** Writes the index once (the pod source must be synced) and follows changes after. */
  async start(): Promise<void> {
    // A killed agent's half-written index copies: never read by the shim, but they pile up.
    const stale = await removeIndexTemps(this.deps.stateDir);
    if (stale.length > 0)
      this.deps.log.info(
        { dir: this.deps.stateDir, removedTemp: stale.length },
        'removed temp files of interrupted pod index writes',
      );
    this.last = await readFile(this.path).catch(() => undefined);
    this.deps.pods.onChange?.(() => this.schedule());
    await this.sync();
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    return this.writing;
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sync().catch(() => undefined);
    }, this.deps.debounceMs ?? 100);
  }

  /** One rewrite at a time, in order; a failure is logged and retried on the next change. */
  sync(): Promise<void> {
    this.writing = this.writing
      .then(() => this.writeNow())
      .catch((e: Error) => {
        this.deps.log.error(
          { file: this.path, err: e.message },
          'cannot write the pod index; the shim falls back to failing closed',
        );
      });
    return this.writing;
  }

  private async writeNow(): Promise<void> {
    const { entries, left } = indexEntries(await this.deps.pods.list(), this.deps);
    const data = encodeIndex(entries);
    if (this.last?.equals(data)) return;
    await writeIndexFile(this.path, data);
    this.last = data;
    const skipped = entries.filter((e) => !e.captured).length;
    this.deps.log.info(
      {
        file: this.path,
        pods: entries.length,
        notCaptured: skipped,
        leftOut: left.slice(0, 10),
        leftOutCount: left.length,
      },
      'pod index written',
    );
  }
}
