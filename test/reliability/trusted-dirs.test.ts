// The directories the agent trusts (stateDir and its pods/, the podsDir of manifests) are checked for
// owner and mode before use: one that someone else may write, or whose parent someone else may
// rename things in, is refused with an error naming the path. Issue 22.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { DirPodSource } from '../../src/agent/pods/dir.js';
import { PodStateStore, trustedDirProblem } from '../../src/agent/state/records.js';

const NOBODY = 65534;
const log = pino({ level: 'silent' });
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** A fresh root-owned 0700 directory `top` with `top/a/b` in it, modes and owners as the case says. */
function layout(parentMode: number, dirMode: number, dirUid = 0): { parent: string; dir: string } {
  const top = mkdtempSync(join(tmpdir(), 'mcni-trust-'));
  cleanups.push(() => rmSync(top, { recursive: true, force: true }));
  const parent = join(top, 'a');
  const dir = join(parent, 'b');
  mkdirSync(dir, { recursive: true });
  chmodSync(parent, parentMode);
  chmodSync(dir, dirMode);
  chownSync(dir, dirUid, dirUid);
  return { parent, dir };
}

const cases = [
  { name: 'a 0700 directory under a 0755 parent', parentMode: 0o755, dirMode: 0o700, uid: 0, says: null },
  { name: 'a 0755 directory under a sticky 1777 parent', parentMode: 0o1777, dirMode: 0o755, uid: 0, says: null },
  { name: 'a world-writable directory', parentMode: 0o755, dirMode: 0o777, uid: 0, says: 'has mode 777' },
  { name: 'a sticky world-writable directory', parentMode: 0o755, dirMode: 0o1777, uid: 0, says: 'has mode 1777' },
  { name: 'a directory another user owns', parentMode: 0o755, dirMode: 0o700, uid: NOBODY, says: 'owned by uid 65534' },
  {
    name: 'a directory under a world-writable, non-sticky parent',
    parentMode: 0o777,
    dirMode: 0o700,
    uid: 0,
    says: 'has mode 777, writable by others and not sticky',
  },
];

describe('trusted directories', () => {
  for (const c of cases) {
    it(`${c.says ? 'refuses' : 'accepts'} ${c.name}`, () => {
      const { dir, parent } = layout(c.parentMode, c.dirMode, c.uid);
      const problem = trustedDirProblem(dir, 'state directory');
      if (c.says === null) return expect(problem).toBeNull();
      expect(problem).toContain(c.says);
      expect(problem).toContain(c.says.includes('not sticky') ? parent : dir);
    });

    it(`state directory: ${c.says ? 'load fails, naming the path,' : 'loads'} for ${c.name}`, () => {
      const { dir } = layout(c.parentMode, c.dirMode, c.uid);
      mkdirSync(join(dir, 'pods'), { mode: 0o700 });
      const load = () => new PodStateStore(dir).load();
      if (c.says === null) return expect(load().loaded).toBe(0);
      expect(load).toThrow(/state directory .*\/b(\/pods)?[: ]/);
    });

    it(`pods directory: ${c.says ? 'start fails, naming the path,' : 'starts'} for ${c.name}`, async () => {
      const { dir } = layout(c.parentMode, c.dirMode, c.uid);
      writeFileSync(join(dir, 'pod.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: cart, namespace: shop}\n');
      const source = new DirPodSource(dir, log);
      cleanups.push(() => void source.stop());
      if (c.says === null) {
        await source.start();
        return expect(await source.list()).toHaveLength(1);
      }
      await expect(source.start()).rejects.toThrow(`pods directory`);
      expect(await source.list()).toHaveLength(0);
    });
  }
});
