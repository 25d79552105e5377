// The standalone pod source: a directory of manifests, re-read when files change.
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { DirPodSource } from '../../src/agent/pods/dir.js';

const dirs: string[] = [];
const sources: DirPodSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function setup(): Promise<{ dir: string; source: DirPodSource; warnings: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'mcni-pods-'));
  dirs.push(dir);
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void warnings.push(s) });
  const source = new DirPodSource(dir, log);
  sources.push(source);
  await source.start();
  return { dir, source, warnings };
}

const yamlPod = (ns: string, name: string, uid = 'u'): string =>
  `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n  uid: ${uid}\nspec:\n  containers:\n    - name: app\n`;

describe('manifest directory pod source', () => {
  it('finds pods by their own namespace and name, across multi-document YAML and JSON', async () => {
    const { dir, source } = await setup();
    writeFileSync(join(dir, 'two.yaml'), `${yamlPod('a', 'one')}---\n${yamlPod('b', 'two')}`);
    writeFileSync(join(dir, 'three.json'), JSON.stringify({ metadata: { name: 'three' }, spec: { containers: [] } }));
    expect(await source.lookup({ namespace: 'a', name: 'one' }, { timeoutMs: 0 })).not.toBeNull();
    expect(await source.lookup({ namespace: 'b', name: 'two' }, { timeoutMs: 0 })).not.toBeNull();
    expect(await source.lookup({ namespace: 'default', name: 'three' }, { timeoutMs: 0 })).not.toBeNull();
    expect((await source.list()).length).toBe(3);
  });

  it('waits for a pod whose file appears during the lookup', async () => {
    const { dir, source } = await setup();
    setTimeout(() => writeFileSync(join(dir, 'late.yaml'), yamlPod('x', 'late')), 100);
    expect(await source.lookup({ namespace: 'x', name: 'late' }, { timeoutMs: 2000 })).not.toBeNull();
  });

  it('sees modifications and deletions', async () => {
    const { dir, source } = await setup();
    writeFileSync(join(dir, 'p.yaml'), yamlPod('x', 'p', 'first'));
    expect(await source.lookup({ namespace: 'x', name: 'p', uid: 'first' }, { timeoutMs: 0 })).not.toBeNull();
    writeFileSync(join(dir, 'p.yaml'), yamlPod('x', 'p', 'second'));
    expect(await source.lookup({ namespace: 'x', name: 'p', uid: 'second' }, { timeoutMs: 1000 })).not.toBeNull();
    expect(await source.lookup({ namespace: 'x', name: 'p', uid: 'first' }, { timeoutMs: 0 })).toBeNull();
    unlinkSync(join(dir, 'p.yaml'));
    await new Promise((r) => setTimeout(r, 300)); // the directory watch settles (50 ms debounce)
    expect(await source.lookup({ namespace: 'x', name: 'p' }, { timeoutMs: 0 })).toBeNull();
  });

  it('skips a broken file with a warning naming it, and keeps serving the rest', async () => {
    const { dir, source, warnings } = await setup();
    writeFileSync(join(dir, 'bad.yaml'), 'metadata: [unclosed\n');
    writeFileSync(join(dir, 'good.yaml'), yamlPod('x', 'good'));
    expect(await source.lookup({ namespace: 'x', name: 'good' }, { timeoutMs: 0 })).not.toBeNull();
    expect(warnings.join('')).toMatch(/bad\.yaml/);
  });
});
