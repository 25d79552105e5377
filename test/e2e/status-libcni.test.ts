// CNI STATUS as containerd ≥ 2.0.1 and CRI-O call it through libcni (test/helpers/libcni-status.ts),
// for conflists at 1.0.0 and 1.1.0, through the real shim and the real agent. STATUS fails (50) only
// while this node never had a ready meshcni; after that it answers ready through an agent outage,
// as long as the agent's ready marker and a whole pod index are there. Root.
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { libcniStatus } from '../helpers/libcni-status.js';
import { SHIM, World } from './helpers.js';

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
});

/** A node: the shim in a CNI bin dir next to a 1.1-aware primary plug-in (STATUS: ready), and a conflist. */
function node(cniVersion: string) {
  const w = new World({ warmStart: false });
  worlds.push(w);
  const bin = join(w.dir, 'bin');
  mkdirSync(bin);
  copyFileSync(SHIM, join(bin, 'meshcni'));
  // What current containernetworking plug-ins do for STATUS: nothing to report, exit 0.
  writeFileSync(
    join(bin, 'primary'),
    '#!/bin/sh\n[ "$CNI_COMMAND" = STATUS ] && exit 0\necho \'{"code":4,"msg":"only STATUS here"}\'; exit 1\n',
  );
  chmodSync(join(bin, 'primary'), 0o755);
  const conflist = {
    cniVersion,
    name: 'k8s-pod-network',
    plugins: [{ type: 'primary' }, { type: 'meshcni', ...w.entry(), podIndexPath: join(w.stateDir, 'pod-index') }],
  };
  return { w, status: () => libcniStatus(conflist, [bin]) };
}

describe('CNI STATUS as libcni calls it', () => {
  it('a 1.0.0 conflist never execs a plug-in for STATUS: ready whatever the agent does', async () => {
    const { w, status } = node('1.0.0');
    expect(status()).toEqual({ ok: true, execed: [], stderr: '' });
    await w.startAgent();
    await w.stopAgent('SIGKILL');
    expect(status()).toEqual({ ok: true, execed: [], stderr: '' });
  });

  it('1.1.0: fails with code 50 at meshcni while the node never had a ready agent (the bootstrap gate)', () => {
    const { status } = node('1.1.0');
    const r = status();
    expect(r.ok).toBe(false);
    expect(r.execed).toEqual(['primary', 'meshcni']);
    expect(r.failed).toMatchObject({ type: 'meshcni', code: 50, msg: 'meshcni agent is not available' });
  });

  it('1.1.0: ready while the agent serves, and stays ready through an outage after it was ready once', async () => {
    const { w, status } = node('1.1.0');
    await w.startAgent();
    expect(status()).toMatchObject({ ok: true, execed: ['primary', 'meshcni'] });
    await w.stopAgent('SIGKILL');
    const down = status();
    expect(down).toMatchObject({ ok: true, execed: ['primary', 'meshcni'] });
    expect(down.stderr).toMatch(/meshcni: STATUS ready without the agent/);
  });

  it.each([
    [
      'the pod index is damaged',
      (dir: string) => writeFileSync(join(dir, 'pod-index'), 'meshcni-pod-index 1\npods 1\n', { mode: 0o600 }),
    ],
    ['the ready marker is not root-only', (dir: string) => chmodSync(join(dir, 'pod-index.ready'), 0o644)],
    [
      'the ready marker holds something else',
      (dir: string) => writeFileSync(join(dir, 'pod-index.ready'), 'ready\n', { mode: 0o600 }),
    ],
  ])('1.1.0: fails with code 50 during an outage when %s', async (_what, spoil) => {
    const { w, status } = node('1.1.0');
    await w.startAgent();
    await w.stopAgent('SIGKILL');
    spoil(w.stateDir);
    expect(status()).toMatchObject({ ok: false, failed: { type: 'meshcni', code: 50 } });
  });
});
