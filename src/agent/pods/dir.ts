// Standalone pod metadata: a directory of pod manifests (YAML, multi-document, or JSON), indexed by
// each pod's own metadata namespace/name and re-read when files change.
import { readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { parseAllDocuments } from 'yaml';
import { trustedDirProblem } from '../state/records.js';
import { keyString, podKeyOf, uidMatches, type PodKey, type PodSource } from './source.js';

const MANIFEST = /\.(ya?ml|json)$/;

export class DirPodSource implements PodSource {
  private pods = new Map<string, Record<string, unknown>>();
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  private started = false;
  private waiters = new Set<() => void>();
  private listeners: (() => void)[] = [];

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Re-reads every manifest; a broken file is logged and skipped, never fatal. */
  reload(): void {
    const next = new Map<string, Record<string, unknown>>();
    let files: string[];
    try {
      // Someone who can write the directory could name any pod's labels: such a directory is not read.
      const problem = trustedDirProblem(this.dir, 'pods directory');
      if (problem) throw new Error(problem);
      files = readdirSync(this.dir)
        .filter((f) => MANIFEST.test(f))
        .sort();
    } catch (e) {
      this.log.error({ dir: this.dir, err: (e as Error).message }, 'cannot read the pods directory');
      return;
    }
    for (const f of files) {
      const path = join(this.dir, f);
      try {
        const text = readFileSync(path, 'utf8');
        for (const doc of parseAllDocuments(text)) {
          if (doc.errors.length > 0) throw new Error(doc.errors[0]!.message);
          const obj = doc.toJSON() as unknown;
          if (obj === null || obj === undefined) continue;
          if (typeof obj !== 'object' || Array.isArray(obj)) throw new Error('a document is not an object');
          const key = podKeyOf(obj as Record<string, unknown>);
          if (!key) throw new Error('a document has no metadata.name');
          next.set(keyString(key), obj as Record<string, unknown>);
        }
      } catch (e) {
        this.log.warn({ file: path, err: (e as Error).message }, 'skipped a pod manifest that does not parse');
      }
    }
    this.pods = next;
    for (const w of this.waiters) w();
    for (const l of this.listeners) l();
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  async start(): Promise<void> {
    let problem: string | null = null;
    try {
      problem = trustedDirProblem(this.dir, 'pods directory');
    } catch {
      // a directory that is not there (yet): reload logs it, and nothing is read from it
    }
    if (problem) throw new Error(problem);
    this.reload();
    try {
      this.watcher = watch(this.dir, () => {
        // Editors and `cp` produce bursts of events: re-read once they settle.
        if (this.timer) clearTimeout(this.timer);
        this.timer = setTimeout(() => this.reload(), 50);
      });
    } catch (e) {
      this.log.warn(
        { dir: this.dir, err: (e as Error).message },
        'cannot watch the pods directory; re-reading on lookups only',
      );
    }
    this.started = true;
    this.log.info({ dir: this.dir, pods: this.pods.size }, 'pod source: manifest directory');
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.waiters) w();
    this.started = false;
  }

  ready(): boolean {
    return this.started;
  }

  async list(): Promise<Record<string, unknown>[]> {
    return [...this.pods.values()];
  }

  private find(key: PodKey): Record<string, unknown> | null {
    const obj = this.pods.get(keyString(key));
    return obj && uidMatches(key, obj) ? obj : null;
  }

  async lookup(key: PodKey, opts: { timeoutMs: number }): Promise<Record<string, unknown> | null> {
    let found = this.find(key);
    if (found) return found;
    this.reload(); // a file written a moment ago, before the watcher fired
    found = this.find(key);
    if (found || opts.timeoutMs <= 0) return found;
    return new Promise((resolve) => {
      const done = (): void => {
        const f = this.find(key);
        if (f || !this.started) finish(f);
      };
      const finish = (v: Record<string, unknown> | null): void => {
        clearTimeout(t);
        this.waiters.delete(done);
        resolve(v);
      };
      const t = setTimeout(() => finish(this.find(key)), opts.timeoutMs);
      this.waiters.add(done);
    });
  }
}
