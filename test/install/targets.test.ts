// Where the installer chains in: a named file (cniConfFileName) instead of the runtime's first, and
// the default network inside a Multus config; uninstall restores each exactly.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniInstaller, resolveOptions, type InstallerOptions } from '../../src/install/installer.js';

let root: string;
let confDir: string;
const installers: CniInstaller[] = [];

const LIST = (name: string): string =>
  JSON.stringify({ cniVersion: '1.0.0', name, plugins: [{ type: 'bridge', bridge: 'cni0' }] });
const MULTUS = JSON.stringify({
  cniVersion: '0.3.1',
  name: 'multus-cni-network',
  type: 'multus',
  kubeconfig: '/etc/cni/net.d/multus.d/multus.kubeconfig',
  delegates: [
    {
      cniVersion: '0.3.1',
      name: 'default-net',
      plugins: [
        { type: 'bridge', bridge: 'cni0' },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    { cniVersion: '0.3.1', name: 'second', type: 'macvlan', master: 'eth1' },
  ],
});

function installer(extra: InstallerOptions = {}): CniInstaller {
  const built = new URL('../../build/Release/meshcni', import.meta.url).pathname;
  const i = new CniInstaller({
    cniConfDir: confDir,
    cniBinDir: join(root, 'bin'),
    shimPath: built,
    log: pino({ level: 'silent' }),
    recheckIntervalMs: 100,
    debounceMs: 10,
    ...extra,
  });
  installers.push(i);
  return i;
}
const types = (o: { plugins?: { type: string }[] }): string[] => (o.plugins ?? []).map((p) => p.type);
const read = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(confDir, name), 'utf8')) as Record<string, unknown>;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'meshcni-targets-'));
  confDir = join(root, 'net.d');
  mkdirSync(confDir);
  mkdirSync(join(root, 'bin'));
});
afterEach(async () => {
  for (const i of installers.splice(0)) await i.stop({ uninstall: false }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe('cniConfFileName', () => {
  it('chains into the named file, not the first one, and uninstall restores its bytes', async () => {
    writeFileSync(join(confDir, '00-first.conflist'), LIST('first'));
    writeFileSync(join(confDir, '50-target.conflist'), LIST('target'));
    const i = installer({ cniConfFileName: '50-target.conflist' });
    await i.start();
    expect(types(read('50-target.conflist') as never)).toEqual(['bridge', 'meshcni']);
    expect(readFileSync(join(confDir, '00-first.conflist'), 'utf8')).toBe(LIST('first'));
    await i.stop({ uninstall: true });
    expect(readFileSync(join(confDir, '50-target.conflist'), 'utf8')).toBe(LIST('target'));
  });

  it('waits for the named file to appear', async () => {
    writeFileSync(join(confDir, '00-first.conflist'), LIST('first'));
    const i = installer({ cniConfFileName: '50-late.conflist' });
    expect((await i.check()).state).toBe('waiting');
    const started = i.start();
    writeFileSync(join(confDir, '50-late.conflist'), LIST('late'));
    await started;
    expect(types(read('50-late.conflist') as never)).toEqual(['bridge', 'meshcni']);
    expect(readFileSync(join(confDir, '00-first.conflist'), 'utf8')).toBe(LIST('first'));
  });

  it.each(['../etc/x.conflist', 'sub/x.conflist', 'x.txt', '.hidden.conflist'])(
    'rejects cniConfFileName %j, naming it',
    (bad) => {
      expect(() => resolveOptions({ cniConfFileName: bad })).toThrow(
        new RegExp(`cniConfFileName "${bad.replace(/\./g, '\\.')}"`),
      );
    },
  );
});

describe('Multus', () => {
  it('chains into the default network (delegates[0]) of a Multus config, leaving other delegates alone, and uninstall restores it', async () => {
    writeFileSync(join(confDir, '00-multus.conf'), MULTUS);
    const i = installer();
    await i.start();
    const doc = read('00-multus.conf') as {
      type: string;
      delegates: { plugins?: { type: string }[]; type?: string }[];
    };
    expect(doc.type).toBe('multus');
    expect(types(doc.delegates[0]!)).toEqual(['bridge', 'portmap', 'meshcni']);
    expect(doc.delegates[1]).toEqual(JSON.parse(MULTUS).delegates[1]);
    // A second check finds the entry in place and writes nothing.
    expect(await i.check()).toMatchObject({ state: 'installed', wrote: false });
    await i.stop({ uninstall: true });
    expect(readFileSync(join(confDir, '00-multus.conf'), 'utf8')).toBe(MULTUS);
  });

  it('refuses a Multus config that names its default network by clusterNetwork, saying what to set', async () => {
    const text = JSON.stringify({ ...JSON.parse(MULTUS), clusterNetwork: '/etc/cni/multus/net.d/10-flannel.conflist' });
    writeFileSync(join(confDir, '00-multus.conf'), text);
    const outcome = await installer().check();
    expect(outcome.state).toBe('error');
    expect(String((outcome as { error: Error }).error.message)).toMatch(/clusterNetwork .*10-flannel.*cniConfFileName/);
    expect(readFileSync(join(confDir, '00-multus.conf'), 'utf8')).toBe(text);
  });

  it('chains into a delegate conflist in the Multus conf dir when targeted by cniConfDir + cniConfFileName', async () => {
    const multusDir = join(root, 'multus-net.d');
    mkdirSync(multusDir);
    writeFileSync(join(multusDir, '10-flannel.conflist'), LIST('flannel'));
    const i = installer({ cniConfDir: multusDir, cniConfFileName: '10-flannel.conflist' });
    await i.start();
    expect(types(JSON.parse(readFileSync(join(multusDir, '10-flannel.conflist'), 'utf8')))).toEqual([
      'bridge',
      'meshcni',
    ]);
  });
});
