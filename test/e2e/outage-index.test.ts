// Agent outage with the pod index: the built agent writes the index from its pod source, is killed,
// and the real chain (bridge + loopback + the built shim) then runs ADDs with no agent. Only a pod
// recorded as not captured, with namespace, name and uid all matching, may start. Root.
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { execPlugin } from '../../src/runtime/cni-exec.js';
import type { MeshcniEntry } from '../../src/runtime/sandbox.js';
import { SHIM, World, nftRuleset, pluginFailure } from './helpers.js';
import { addPodWithUid } from './pod-process.js';

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
});

const PLAIN_UID = '0b7c5a52-7a3e-4c0e-9d2a-3f1b2c4d5e6f';
const MESHED_UID = '9f8e7d6c-5b4a-4321-8fed-cba987654321';

/** A world whose agent wrote the index for a plain and a meshed pod, then died (SIGKILL: an outage). */
async function outage(): Promise<{ w: World; entry: MeshcniEntry; index: string; bytes: Buffer }> {
  const w = new World();
  worlds.push(w);
  addPodWithUid(w.podsDir, { namespace: 'shop', name: 'plain', containers: ['app'] }, PLAIN_UID);
  addPodWithUid(w.podsDir, { namespace: 'shop', name: 'meshed' }, MESHED_UID);
  await w.startAgent();
  const index = join(w.stateDir, 'pod-index');
  await w.stopAgent('SIGKILL');
  const entry = { ...w.entry(), podIndexPath: index } as MeshcniEntry;
  return { w, entry, index, bytes: readFileSync(index) };
}

describe('pod index written by the agent', () => {
  it('is root-only and records each pod with its capture decision and uid', async () => {
    const { index, bytes } = await outage();
    expect(statSync(index).mode & 0o777).toBe(0o600);
    const text = bytes.toString('ascii');
    expect(text).toMatch(/^meshcni-pod-index 1\npods 2\n/);
    expect(text).toContain(`S shop plain ${PLAIN_UID}\n`);
    expect(text).toContain(`C shop meshed ${MESHED_UID}\n`);
    expect(text).toMatch(/\nend [0-9a-f]{8}\n$/);
  });
});

describe('pod index following the pod source', () => {
  it('records a pod added while the agent runs, so it can start in a later outage', async () => {
    const w = new World();
    worlds.push(w);
    await w.startAgent();
    const index = join(w.stateDir, 'pod-index');
    expect(readFileSync(index, 'ascii')).toMatch(/^meshcni-pod-index 1\npods 0\nend /);
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'late', containers: ['app'] }, PLAIN_UID);
    const deadline = Date.now() + 10_000;
    while (!readFileSync(index, 'ascii').includes(`S shop late ${PLAIN_UID}`)) {
      if (Date.now() > deadline) throw new Error(`index never recorded shop/late:\n${readFileSync(index, 'ascii')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await w.stopAgent('SIGKILL');
    const entry = { ...w.entry(), podIndexPath: index } as MeshcniEntry;
    const s = w.sandbox(
      { namespace: 'shop', name: 'late', uid: PLAIN_UID } as { namespace: string; name: string },
      entry,
    );
    await s.add();
    expect(nftRuleset(s.netnsName)).toBe('');
  });
});

describe('ADD while the agent is down', () => {
  it('passes a pod recorded as not captured through with prevResult and a note on stderr', async () => {
    const { w, entry } = await outage();
    const s = w.sandbox(
      { namespace: 'shop', name: 'plain', uid: PLAIN_UID } as { namespace: string; name: string },
      entry,
    );
    const result = await s.add();
    expect(result.cniVersion).toBe('1.0.0');
    expect(s.address()).toMatch(/^10\.249\./); // the bridge plug-in's result came through
    expect(nftRuleset(s.netnsName)).toBe('');
    // The shim alone, fed the same call, says why it let the pod through.
    const run = await execPlugin(
      SHIM,
      {
        command: 'ADD',
        containerId: s.containerId,
        netns: s.netnsPath,
        ifName: 'eth0',
        args: `K8S_POD_NAMESPACE=shop;K8S_POD_NAME=plain;K8S_POD_UID=${PLAIN_UID}`,
        path: ['/usr/lib/cni'],
      },
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'x',
        type: 'meshcni',
        ...entry,
        prevResult: { cniVersion: '1.0.0', ips: [] },
      }),
    );
    expect(run, run.stdout + run.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(run.stdout)).toEqual({ cniVersion: '1.0.0', ips: [] });
    expect(run.stderr).toMatch(/passed without the agent .*records shop\/plain uid .* as not captured/);
  });

  const refused: [string, { namespace: string; name: string; uid?: string }][] = [
    ['a pod recorded as captured', { namespace: 'shop', name: 'meshed', uid: MESHED_UID }],
    ['a pod the index does not know', { namespace: 'shop', name: 'newcomer', uid: PLAIN_UID }],
    [
      'a pod whose uid differs (recreated under the same name)',
      { namespace: 'shop', name: 'plain', uid: '11111111-2222-3333-4444-555555555555' },
    ],
    ['a pod in another namespace with the same name and uid', { namespace: 'other', name: 'plain', uid: PLAIN_UID }],
    ['a call without K8S_POD_UID', { namespace: 'shop', name: 'plain' }],
  ];
  it.each(refused)('fails %s with code 11 and programs nothing', async (_what, pod) => {
    const { w, entry } = await outage();
    const s = w.sandbox(pod, entry);
    const e = await pluginFailure(s.add());
    expect(e.cniError?.code).toBe(11);
    expect(nftRuleset(s.netnsName)).toBe('');
  });

  const damaged: [string, (b: Buffer) => Buffer][] = [
    ['truncated mid-record', (b) => b.subarray(0, b.indexOf('S shop plain') + 20)],
    ['truncated before its checksum line', (b) => b.subarray(0, b.lastIndexOf('end '))],
    [
      'with one byte flipped in a record',
      (b) => Buffer.from(b.toString('ascii').replace('C shop meshed', 'S shop meshed'), 'ascii'),
    ],
    [
      'with an extra record the count does not cover',
      (b) => Buffer.from(b.toString('ascii').replace(/\nend /, `\nS shop meshed ${MESHED_UID}\nend `), 'ascii'),
    ],
    [
      'of another version',
      (b) => Buffer.from(b.toString('ascii').replace('meshcni-pod-index 1', 'meshcni-pod-index 2'), 'ascii'),
    ],
    ['empty', () => Buffer.alloc(0)],
  ];
  it.each(damaged)('fails a not-captured pod with code 11 when the index is %s', async (_what, damage) => {
    const { w, entry, index, bytes } = await outage();
    writeFileSync(index, damage(bytes));
    const s = w.sandbox(
      { namespace: 'shop', name: 'plain', uid: PLAIN_UID } as { namespace: string; name: string },
      entry,
    );
    const e = await pluginFailure(s.add());
    expect(e.cniError?.code).toBe(11);
  });

  it('fails with code 11 when the index is readable by others (not root-only) or missing', async () => {
    const { w, entry, index } = await outage();
    chmodSync(index, 0o644);
    const pod = { namespace: 'shop', name: 'plain', uid: PLAIN_UID } as { namespace: string; name: string };
    expect((await pluginFailure(w.sandbox(pod, entry).add())).cniError?.code).toBe(11);
    const missing = { ...entry, podIndexPath: join(w.dir, 'no-such-index') } as MeshcniEntry;
    expect((await pluginFailure(w.sandbox(pod, missing).add())).cniError?.code).toBe(11);
  });

  it('rejects a podIndexPath that is not an absolute path as invalid config (code 7), naming it', async () => {
    const { w, entry } = await outage();
    const bad = { ...entry, podIndexPath: 'state/pod-index' } as MeshcniEntry;
    const e = await pluginFailure(
      w.sandbox({ namespace: 'shop', name: 'plain', uid: PLAIN_UID } as { namespace: string; name: string }, bad).add(),
    );
    expect(e.cniError?.code).toBe(7);
    expect(e.cniError?.msg).toMatch(/podIndexPath "state\\?\/pod-index" must be an absolute path/);
  });

  it('lets the same pod start once the index is restored byte for byte', async () => {
    const { w, entry, index, bytes } = await outage();
    writeFileSync(index, bytes.subarray(0, bytes.length - 3));
    const pod = { namespace: 'shop', name: 'plain', uid: PLAIN_UID } as { namespace: string; name: string };
    expect((await pluginFailure(w.sandbox(pod, entry).add())).cniError?.code).toBe(11);
    writeFileSync(index, bytes);
    await w.sandbox(pod, entry).add();
  });
});
