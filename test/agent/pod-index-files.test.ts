// The pod index's file handling: temp files a killed agent left are removed at start (the index
// itself and unrelated files stay), and a failed atomic write leaves neither a temp file nor a
// changed target. No root needed.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PodIndexSync } from '../../src/agent/state/pod-index-sync.js';
import { INDEX_MAGIC } from '../../src/agent/state/pod-index.js';
import type { PodSource } from '../../src/agent/pods/source.js';
import { writeFileAtomic } from '../../src/files/atomic-write.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), `mcni-podindex-${process.pid}-`));
  dirs.push(d);
  return d;
}

const noPods: PodSource = {
  lookup: () => Promise.resolve(null),
  list: () => Promise.resolve([]),
  start: () => Promise.resolve(),
  stop: () => Promise.resolve(),
  ready: () => true,
};

describe('pod index files', () => {
  it('removes the temp files of interrupted index writes at start, and only those', async () => {
    const stateDir = tempDir();
    mkdirSync(join(stateDir, 'pods'));
    const stale = ['.pod-index.4242.0a1b2c3d4e5f.tmp', '.pod-index.77.ffffffffffff.tmp'];
    for (const n of stale) writeFileSync(join(stateDir, n), 'meshcni-pod-index 1\npods 3\nS a');
    writeFileSync(join(stateDir, 'pod-index'), 'an older index');
    writeFileSync(join(stateDir, 'notes.tmp'), 'not ours');
    const lines: string[] = [];
    const sync = new PodIndexSync({
      stateDir,
      pods: noPods,
      planPod: () => ({ capture: false, reason: 'test' }),
      excludeNamespaces: [],
      log: pino({ level: 'info' }, { write: (s: string) => void lines.push(s) }),
    });
    await sync.start();
    await sync.stop();
    expect(readdirSync(stateDir).sort()).toEqual(['notes.tmp', 'pod-index', 'pods']);
    expect(readFileSync(join(stateDir, 'pod-index'), 'ascii')).toMatch(new RegExp(`^${INDEX_MAGIC}\npods 0\n`));
    const removed = lines
      .map((l) => JSON.parse(l) as { msg: string; removedTemp?: number })
      .find((l) => l.removedTemp !== undefined);
    expect(removed).toMatchObject({
      removedTemp: 2,
      msg: expect.stringMatching(/temp files of interrupted pod index writes/),
    });
  });

  it('a write that cannot be renamed into place leaves no temp file and the target as it was', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'target')); // rename(file, dir) fails with EISDIR
    writeFileSync(join(dir, 'target', 'inside'), 'kept');
    const err = await writeFileAtomic(join(dir, 'target'), 'new', {
      mode: 0o600,
      tempPrefix: '.t-',
      tempSuffix: '.tmp',
    }).then(
      () => null,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    expect(err?.code).toBe('EISDIR');
    expect(readdirSync(dir)).toEqual(['target']);
    expect(readFileSync(join(dir, 'target', 'inside'), 'utf8')).toBe('kept');
  });
});
