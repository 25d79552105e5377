// The installer's modes that never write the primary's file, on real temporary directories: the owned config
// (meshcni's own first-sorting conflist, the primary's plug-ins plus meshcni) and standalone (Multus) mode
// (meshcni's own network); uninstall removes only meshcni's file.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BACKUP_DIR_NAME,
  CniInstaller,
  selectPrimaryConfig,
  type InstallerOptions,
} from '../../src/install/installer.js';

const OWNED = '02-meshcni.conflist';
const BRIDGE_LIST = `{\n\t"cniVersion": "1.0.0",\n\t"name": "bridge-net",\n\t"plugins": [ { "type": "bridge", "bridge": "cni0" }, { "type": "portmap" } ]\n}`;
const LONE_CONF = '{"cniVersion":"0.4.0","name":"dbnet","type":"bridge","bridge":"cni0"}\n';

let root: string;
let confDir: string;
let binDir: string;
const installers: CniInstaller[] = [];

function installer(extra: InstallerOptions = {}): CniInstaller {
  const built = new URL('../../build/Release/meshcni', import.meta.url).pathname;
  const shimPath = existsSync(built) ? built : join(root, 'shim');
  if (!existsSync(shimPath)) writeFileSync(shimPath, '#!/bin/sh\n');
  const i = new CniInstaller({
    cniConfDir: confDir,
    cniBinDir: binDir,
    shimPath,
    ownedConfigFileName: OWNED,
    recheckIntervalMs: 100,
    debounceMs: 10,
    log: pino({ level: 'silent' }),
    ...extra,
  });
  installers.push(i);
  return i;
}
const types = (name: string): string[] =>
  (JSON.parse(readFileSync(join(confDir, name), 'utf8')) as { plugins: { type: string }[] }).plugins.map((p) => p.type);
const visible = (): string[] =>
  readdirSync(confDir)
    .filter((n) => n !== BACKUP_DIR_NAME)
    .sort();

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'meshcni-owned-'));
  confDir = join(root, 'net.d');
  binDir = join(root, 'bin');
  mkdirSync(confDir);
  mkdirSync(binDir);
});
afterEach(async () => {
  for (const i of installers.splice(0)) await i.stop({ uninstall: false }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe('owned config', () => {
  it.each([
    ['a conflist', '10-bridge.conflist', BRIDGE_LIST, ['bridge', 'portmap', 'meshcni']],
    ['a lone .conf', '10-bridge.conf', LONE_CONF, ['bridge', 'meshcni']],
  ])(
    "writes its own file from %s, which the runtime then loads first, leaving the primary's bytes alone",
    async (_what, name, text, want) => {
      writeFileSync(join(confDir, name), text);
      const i = installer();
      await i.start();
      expect(i.installed).toBe(OWNED);
      expect(types(OWNED)).toEqual(want);
      expect(await selectPrimaryConfig(confDir)).toBe(OWNED);
      expect(readFileSync(join(confDir, name), 'utf8')).toBe(text);
      expect(visible()).toEqual([OWNED, name].sort());
    },
  );

  it("rewrites its file when the primary's changes, and removes it when the primary goes", async () => {
    const primary = join(confDir, '10-bridge.conflist');
    writeFileSync(primary, BRIDGE_LIST);
    const i = installer();
    await i.start();
    writeFileSync(
      join(confDir, '.tmp-primary'),
      BRIDGE_LIST.replace('{ "type": "portmap" }', '{ "type": "portmap" }, { "type": "bandwidth" }'),
    );
    renameSync(join(confDir, '.tmp-primary'), primary);
    const until = async (what: string, pred: () => boolean): Promise<void> => {
      for (const end = Date.now() + 5000; !pred(); await new Promise((r) => setTimeout(r, 20)))
        if (Date.now() > end) throw new Error(`timed out: ${what}`);
    };
    await until('owned file follows', () => types(OWNED).includes('bandwidth'));
    expect(types(OWNED)).toEqual(['bridge', 'portmap', 'bandwidth', 'meshcni']);
    unlinkSync(primary);
    await until('owned file removed', () => !existsSync(join(confDir, OWNED)));
    expect(visible()).toEqual([]);
  });

  it('uninstall removes only its own file', async () => {
    writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const i = installer();
    await i.start();
    await i.stop({ uninstall: true });
    expect(visible()).toEqual(['10-bridge.conflist']);
    expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).toBe(BRIDGE_LIST);
  });

  it('puts the primary back byte for byte when an earlier install chained into it', async () => {
    writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const chained = installer({ ownedConfigFileName: '' });
    await chained.start();
    await chained.stop({ uninstall: false });
    expect(types('10-bridge.conflist')).toContain('meshcni');
    await installer().start();
    expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).toBe(BRIDGE_LIST);
    expect(types(OWNED)).toEqual(['bridge', 'portmap', 'meshcni']);
  });

  it.each([
    [
      'a primary that sorts before it',
      '00-multus.conf',
      LONE_CONF,
      /00-multus\.conf.*sorts before 02-meshcni\.conflist/,
    ],
    [
      "a file of that name that is not meshcni's",
      OWNED,
      BRIDGE_LIST,
      /02-meshcni\.conflist.*not a meshcni config; refusing to overwrite it/,
    ],
  ])('refuses %s, naming the file, and writes nothing', async (_what, name, text, message) => {
    writeFileSync(join(confDir, name), text);
    if (name === OWNED) writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const before = visible().map((f) => [f, readFileSync(join(confDir, f), 'utf8')]);
    const outcome = await installer().check();
    expect(outcome.state).toBe('error');
    expect(outcome.state === 'error' && outcome.error.message).toMatch(message);
    expect(visible().map((f) => [f, readFileSync(join(confDir, f), 'utf8')])).toEqual(before);
  });

  it.each([
    ['a path', 'x/02.conflist'],
    ['a .conf', '02-meshcni.conf'],
    ['a hidden name', '.02.conflist'],
  ])('rejects %s as ownedConfigFileName', (_what, name) => {
    expect(() => new CniInstaller({ ownedConfigFileName: name })).toThrow(
      `ownedConfigFileName ${JSON.stringify(name)} must be a .conflist file name`,
    );
  });
});

describe('standalone (chained: false)', () => {
  const standalone = (extra: InstallerOptions = {}): CniInstaller =>
    installer({ ownedConfigFileName: '', chained: false, cniConfFileName: 'meshcni.conf', ...extra });

  it("writes meshcni's own network named for its file, touches no other file, and uninstall removes only it", async () => {
    writeFileSync(join(confDir, '00-multus.conf'), LONE_CONF);
    const i = standalone();
    await i.start();
    expect(JSON.parse(readFileSync(join(confDir, 'meshcni.conf'), 'utf8'))).toMatchObject({
      cniVersion: '0.3.1',
      name: 'meshcni',
      type: 'meshcni',
    });
    expect(readFileSync(join(confDir, '00-multus.conf'), 'utf8')).toBe(LONE_CONF);
    expect(visible()).toEqual(['00-multus.conf', 'meshcni.conf']);
    await i.stop({ uninstall: true });
    expect(visible()).toEqual(['00-multus.conf']);
  });

  it("needs no primary config (Multus's own may come later)", async () => {
    await standalone().start();
    expect(visible()).toEqual(['meshcni.conf']);
  });

  it("refuses to overwrite a file of that name that is not meshcni's", async () => {
    writeFileSync(join(confDir, 'meshcni.conf'), LONE_CONF);
    const outcome = await standalone().check();
    expect(outcome.state === 'error' && outcome.error.message).toMatch(
      /meshcni\.conf: exists and is not a meshcni config/,
    );
    expect(readFileSync(join(confDir, 'meshcni.conf'), 'utf8')).toBe(LONE_CONF);
  });

  it.each([
    ['no cniConfFileName', { cniConfFileName: '' }],
    ['a .conflist', { cniConfFileName: 'meshcni.conflist' }],
    ['an owned config too', { ownedConfigFileName: OWNED }],
  ])('rejects %s', (_what, extra) => {
    expect(() => new CniInstaller({ chained: false, cniConfFileName: 'meshcni.conf', ...extra })).toThrow(
      /chained false: cniConfFileName .* must name meshcni's own \.conf/,
    );
  });
});
