// What the agent did, per attachment, kept on disk so a restarted agent still knows: one small JSON
// file per container, written atomically (write + rename).
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface PodRecord {
  containerId: string;
  ifName: string;
  netns: string;
  namespace: string;
  name: string;
  uid?: string;
  /** sha256 of the programmed tables' canonical description. */
  rulesDigest: string;
  layout: string;
  capturedAt: string;
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,255}$/;

export class PodStateStore {
  private readonly records = new Map<string, PodRecord>();
  private readonly dir: string;
  private seq = 0;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'pods');
  }

  /** Creates the directory (0700) and loads every record; unreadable files are returned as problems. */
  load(): { loaded: number; problems: string[] } {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const problems: string[] = [];
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith('.json')) continue;
      try {
        const r = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as PodRecord;
        if (typeof r.containerId !== 'string' || !SAFE_ID.test(r.containerId)) throw new Error('no valid containerId');
        this.records.set(r.containerId, r);
      } catch (e) {
        problems.push(`${f}: ${(e as Error).message}`);
      }
    }
    return { loaded: this.records.size, problems };
  }

  private path(containerId: string): string {
    if (!SAFE_ID.test(containerId)) throw new Error(`container id '${containerId}' is not a safe file name`);
    return join(this.dir, `${containerId}.json`);
  }

  get(containerId: string): PodRecord | undefined {
    return this.records.get(containerId);
  }

  all(): PodRecord[] {
    return [...this.records.values()];
  }

  /** Records a pod (atomically: temp file + rename), off the event loop. */
  async put(r: PodRecord): Promise<void> {
    const p = this.path(r.containerId);
    const tmp = `${p}.${process.pid}.${++this.seq}.tmp`;
    this.records.set(r.containerId, r);
    await writeFile(tmp, JSON.stringify(r), { mode: 0o600 });
    await rename(tmp, p);
  }

  async delete(containerId: string): Promise<boolean> {
    const had = this.records.delete(containerId);
    await rm(this.path(containerId), { force: true });
    return had;
  }
}
