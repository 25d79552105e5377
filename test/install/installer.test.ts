// The installer on real temporary directories: chaining in, re-inserting after the primary CNI
// rewrites its file, exact uninstall, waiting for and retrying on bad configs, atomic shim copy.
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  renameSync,
  mkdirSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BACKUP_DIR_NAME,
  CniInstaller,
  SHIM_NAME,
  TEMP_PREFIX,
  installShim,
  runInstall,
  runUninstall,
  selectPrimaryConfig,
  type InstallerOptions,
} from '../../src/install/installer.js';

// Deliberately not in our own JSON style (tabs, no final newline) so "byte-identical" means something.
const BRIDGE_LIST = `{
\t"cniVersion": "1.0.0",
\t"name": "bridge-net",
\t"plugins": [
\t\t{ "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
\t\t  "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.22.0.0/16" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
\t\t{ "type": "portmap", "capabilities": { "portMappings": true } }
\t]
}`;
const LONE_CONF = `{"cniVersion":"0.4.0","name":"dbnet","type":"bridge","bridge":"cni0",
 "ipam":{"type":"host-local","subnet":"10.1.0.0/16","gateway":"10.1.0.1"},"dns":{"nameservers":["10.1.0.1"]}}
`;

let root: string;
let confDir: string;
let binDir: string;
let shimSrc: string;
let lines: string[];
const installers: CniInstaller[] = [];

function logger() {
  return pino(
    { level: 'debug' },
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
}

function makeInstaller(extra: InstallerOptions = {}): CniInstaller {
  const i = new CniInstaller({ ...opts(), ...extra });
  installers.push(i);
  return i;
}

function opts(): InstallerOptions {
  return {
    cniConfDir: confDir,
    cniBinDir: binDir,
    shimPath: shimSrc,
    socketPath: '/var/run/meshcni/cni.sock',
    excludeNamespaces: ['kube-system'],
    logLevel: 'debug',
    recheckIntervalMs: 150,
    debounceMs: 20,
    log: logger(),
  };
}

async function waitFor(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const plugins = (path: string): { type: string }[] => JSON.parse(readFileSync(path, 'utf8')).plugins;
const meshcniCount = (path: string): number => plugins(path).filter((p) => p.type === 'meshcni').length;
const chainedLogs = (): number => lines.filter((l) => l.includes('meshcni chained into the CNI config')).length;
const visible = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n !== BACKUP_DIR_NAME)
    .sort();

/** How a primary CNI typically (re)writes its config: temp file + rename. */
function primaryWrites(name: string, text: string): void {
  const tmp = join(confDir, `.primary-tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(confDir, name));
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'meshcni-install-'));
  confDir = join(root, 'net.d');
  binDir = join(root, 'bin');
  mkdirSync(confDir);
  mkdirSync(binDir);
  // The real shim when built, else a stand-in: the installer only copies bytes.
  const built = new URL('../../build/Release/meshcni', import.meta.url).pathname;
  shimSrc = existsSync(built) ? built : join(root, 'shim-src');
  if (!existsSync(built)) writeFileSync(shimSrc, '#!/bin/sh\necho meshcni stand-in\n', { mode: 0o644 });
  lines = [];
});

afterEach(async () => {
  for (const i of installers.splice(0)) await i.stop({ uninstall: false }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe('selectPrimaryConfig', () => {
  it('picks the lexicographically first .conflist/.conf/.json and ignores our temp files and backup dir', async () => {
    expect(await selectPrimaryConfig(join(root, 'absent'))).toBeNull();
    expect(await selectPrimaryConfig(confDir)).toBeNull();
    mkdirSync(join(confDir, BACKUP_DIR_NAME));
    writeFileSync(join(confDir, `${TEMP_PREFIX}abc.conflist`), '{');
    writeFileSync(join(confDir, '00-readme.txt'), 'x');
    writeFileSync(join(confDir, '20-b.json'), '{}');
    expect(await selectPrimaryConfig(confDir)).toBe('20-b.json');
    writeFileSync(join(confDir, '10-a.conflist'), '{}');
    writeFileSync(join(confDir, '10-a.conf'), '{}');
    expect(await selectPrimaryConfig(confDir)).toBe('10-a.conf');
  });
});

describe('CniInstaller', () => {
  it('appends meshcni to a bridge conflist and copies the shim with mode 0755', async () => {
    writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const inst = makeInstaller();
    await inst.start();
    const file = join(confDir, '10-bridge.conflist');
    const orig = JSON.parse(BRIDGE_LIST);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      ...orig,
      plugins: [
        ...orig.plugins,
        {
          type: 'meshcni',
          socketPath: '/var/run/meshcni/cni.sock',
          excludeNamespaces: ['kube-system'],
          timeoutSeconds: 5,
          logLevel: 'debug',
          podIndexPath: '/var/run/meshcni/pod-index',
        },
      ],
    });
    expect(inst.installed).toBe('10-bridge.conflist');
    expect(visible(confDir)).toEqual(['10-bridge.conflist']);
    const shim = join(binDir, SHIM_NAME);
    expect(statSync(shim).mode & 0o777).toBe(0o755);
    expect(readFileSync(shim).equals(readFileSync(shimSrc))).toBe(true);
  });

  it('turns a lone .conf into a .conflist the runtime will load, removing the .conf', async () => {
    writeFileSync(join(confDir, '10-bridge.conf'), LONE_CONF);
    await makeInstaller().start();
    expect(visible(confDir)).toEqual(['10-bridge.conflist']);
    const { cniVersion, ...plugin } = JSON.parse(LONE_CONF);
    const out = JSON.parse(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8'));
    expect(out.cniVersion).toBe(cniVersion);
    expect(out.name).toBe('dbnet');
    expect(out.plugins).toHaveLength(2);
    expect(out.plugins[0]).toEqual(plugin);
    expect(out.plugins[1].type).toBe('meshcni');
  });

  it('re-inserts exactly once when the primary CNI rewrites its conflist', async () => {
    const file = join(confDir, '10-bridge.conflist');
    writeFileSync(file, BRIDGE_LIST);
    const inst = makeInstaller();
    await inst.start();
    expect(chainedLogs()).toBe(1);
    const rewritten = BRIDGE_LIST.replace('10.22.0.0/16', '10.23.0.0/16');
    primaryWrites('10-bridge.conflist', rewritten);
    await waitFor('re-insertion', () => readFileSync(file, 'utf8').includes('meshcni'));
    await sleep(600); // several watch events and periodic re-checks
    expect(meshcniCount(file)).toBe(1);
    expect(chainedLogs()).toBe(2);
    expect(JSON.parse(readFileSync(file, 'utf8')).plugins[0].ipam.ranges[0][0].subnet).toBe('10.23.0.0/16');
    // The backup now holds the primary's new bytes: uninstall returns exactly those.
    await inst.stop({ uninstall: true });
    expect(readFileSync(file, 'utf8')).toBe(rewritten);
  });

  it('re-converts once when the primary CNI writes its lone .conf again', async () => {
    writeFileSync(join(confDir, '10-bridge.conf'), LONE_CONF);
    const inst = makeInstaller();
    await inst.start();
    primaryWrites('10-bridge.conf', LONE_CONF);
    await waitFor('the .conf to be converted again', () => !existsSync(join(confDir, '10-bridge.conf')));
    await sleep(600);
    expect(visible(confDir)).toEqual(['10-bridge.conflist']);
    expect(meshcniCount(join(confDir, '10-bridge.conflist'))).toBe(1);
    expect(chainedLogs()).toBe(2);
    await inst.stop({ uninstall: true });
    expect(visible(confDir)).toEqual(['10-bridge.conf']);
    expect(readFileSync(join(confDir, '10-bridge.conf'), 'utf8')).toBe(LONE_CONF);
  });

  it.each([
    ['a bridge conflist', '10-bridge.conflist', BRIDGE_LIST],
    ['a lone .conf', '10-bridge.conf', LONE_CONF],
  ])(
    'uninstall leaves %s byte-identical, removes the backups and keeps the shim for pods added meanwhile',
    async (_case, name, text) => {
      writeFileSync(join(confDir, name), text, { mode: 0o640 });
      const before = readdirSync(confDir).sort();
      const inst = makeInstaller();
      await inst.start();
      expect(readFileSync(join(confDir, inst.installed ?? ''), 'utf8')).toContain('"meshcni"');
      await inst.stop({ uninstall: true });
      expect(readdirSync(confDir).sort()).toEqual(before);
      expect(readFileSync(join(confDir, name)).equals(Buffer.from(text))).toBe(true);
      expect(statSync(join(confDir, name)).mode & 0o777).toBe(0o640);
      expect(readdirSync(binDir)).toEqual([SHIM_NAME]);
    },
  );

  it('uninstall with purge removes the shim too', async () => {
    writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const inst = makeInstaller();
    await inst.start();
    await inst.stop({ uninstall: true, purge: true });
    expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).toBe(BRIDGE_LIST);
    expect(readdirSync(binDir)).toEqual([]);
  });

  it('on uninstall keeps edits made after our write and removes only our entry', async () => {
    const file = join(confDir, '10-bridge.conflist');
    writeFileSync(file, BRIDGE_LIST);
    const inst = makeInstaller();
    await inst.start();
    await inst.stop({ uninstall: false }); // no watcher: nobody re-inserts behind our back
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    doc.plugins.splice(1, 0, { type: 'bandwidth' });
    writeFileSync(file, JSON.stringify(doc));
    await inst.uninstall();
    expect(plugins(file).map((p) => p.type)).toEqual(['bridge', 'bandwidth', 'portmap']);
  });

  it('waits for a missing primary config (and conf dir) and inserts once it appears', async () => {
    rmSync(confDir, { recursive: true });
    const inst = makeInstaller();
    let done = false;
    const started = inst.start().then(() => (done = true));
    await sleep(400);
    expect(done).toBe(false);
    expect(lines.some((l) => l.includes('waiting for the primary CNI config'))).toBe(true);
    mkdirSync(confDir);
    await sleep(300);
    expect(done).toBe(false);
    primaryWrites('10-bridge.conflist', BRIDGE_LIST);
    await started;
    expect(meshcniCount(join(confDir, '10-bridge.conflist'))).toBe(1);
  });

  it('leaves a malformed primary config untouched, logs why, and inserts once it is fixed', async () => {
    const file = join(confDir, '10-bridge.conflist');
    const broken = BRIDGE_LIST.slice(0, 60);
    writeFileSync(file, broken);
    const inst = makeInstaller();
    let done = false;
    const started = inst.start().then(() => (done = true));
    await waitFor('an error log', () => lines.some((l) => l.includes('"level":50')));
    const err = lines.find((l) => l.includes('"level":50')) ?? '';
    expect(err).toContain(`CNI config ${file}: malformed JSON`);
    await sleep(400); // several retries
    expect(done).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe(broken);
    expect(visible(confDir)).toEqual(['10-bridge.conflist']);
    expect(lines.filter((l) => l.includes('"level":50'))).toHaveLength(1); // logged once, retried quietly
    primaryWrites('10-bridge.conflist', BRIDGE_LIST);
    await started;
    expect(meshcniCount(file)).toBe(1);
  });

  it('reports a missing shim binary by name and retries', async () => {
    writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const inst = makeInstaller({ shimPath: join(root, 'no-shim') });
    const outcome = await inst.check();
    expect(outcome.state).toBe('error');
    expect(outcome.state === 'error' && outcome.error.message).toMatch(/cannot read the shim binary .*no-shim/);
    expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).toBe(BRIDGE_LIST);
  });

  it('moves the entry when a new config sorts first, restoring the old one', async () => {
    writeFileSync(join(confDir, '20-bridge.conflist'), BRIDGE_LIST);
    const inst = makeInstaller();
    await inst.start();
    primaryWrites('10-calico.conflist', BRIDGE_LIST.replace('bridge-net', 'calico'));
    await waitFor('the entry in the new primary', () =>
      readFileSync(join(confDir, '10-calico.conflist'), 'utf8').includes('meshcni'),
    );
    await waitFor(
      'the old config restored',
      () => readFileSync(join(confDir, '20-bridge.conflist'), 'utf8') === BRIDGE_LIST,
    );
    // The rename is visible on disk a moment before the installer's own continuation records it.
    await waitFor('the installer to name the new primary', () => inst.installed === '10-calico.conflist');
    expect(inst.installed).toBe('10-calico.conflist');
  });
});

describe('installShim', () => {
  it('never exposes a partial binary, sets 0755, and skips an identical copy', async () => {
    const big = join(root, 'big-shim');
    const oldBytes = Buffer.alloc(4 << 20, 0x41);
    const newBytes = Buffer.alloc(8 << 20, 0x42);
    writeFileSync(big, newBytes);
    const dest = join(binDir, SHIM_NAME);
    writeFileSync(dest, oldBytes, { mode: 0o755 });
    const seen = new Set<string>();
    let copying = true;
    const reader = (async () => {
      while (copying) {
        const b = await readFile(dest);
        seen.add(b.equals(oldBytes) ? 'old' : b.equals(newBytes) ? 'new' : `partial:${b.length}`);
      }
    })();
    const first = await installShim(big, binDir);
    copying = false;
    await reader;
    expect([...seen].filter((s) => s.startsWith('partial'))).toEqual([]);
    expect(first).toEqual({ path: dest, changed: true });
    expect(readFileSync(dest).equals(newBytes)).toBe(true);
    expect(statSync(dest).mode & 0o777).toBe(0o755);
    expect(readdirSync(binDir)).toEqual([SHIM_NAME]);
    expect(await installShim(big, binDir)).toEqual({ path: dest, changed: false });
  });
});

describe('runInstall / runUninstall', () => {
  /** A stand-in agent on the test's own socket: answers every request as the agent answers an unknown route. */
  async function fakeAgent(): Promise<string> {
    const path = join(root, 'agent.sock');
    const server = createServer((c) =>
      c.once('data', () => c.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n')),
    );
    await new Promise<void>((r) => server.listen(path, r));
    servers.push(server);
    return path;
  }
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  });

  it('install chains in and returns; uninstall restores the exact original', async () => {
    writeFileSync(join(confDir, '10-bridge.conf'), LONE_CONF);
    const socketPath = await fakeAgent();
    const res = await runInstall({ ...opts(), socketPath, waitTimeoutMs: 5000 });
    expect(res).toEqual({
      shim: join(binDir, SHIM_NAME),
      config: join(confDir, '10-bridge.conflist'),
      alreadyChained: false,
    });
    expect(meshcniCount(res.config)).toBe(1);
    // A second install (e.g. the DaemonSet restarting) changes nothing, and says so.
    expect(await runInstall({ ...opts(), socketPath, waitTimeoutMs: 5000 })).toMatchObject({ alreadyChained: true });
    expect(meshcniCount(res.config)).toBe(1);
    await runUninstall({ ...opts(), socketPath });
    expect(readdirSync(confDir)).toEqual(['10-bridge.conf']);
    expect(readFileSync(join(confDir, '10-bridge.conf'), 'utf8')).toBe(LONE_CONF);
    // The shim stays for pods added while chained; a later install replaces it, --purge removes it.
    expect(readdirSync(binDir)).toEqual([SHIM_NAME]);
    writeFileSync(join(binDir, SHIM_NAME), 'an older shim');
    await runInstall({ ...opts(), socketPath, waitTimeoutMs: 5000 });
    expect(readFileSync(join(binDir, SHIM_NAME)).equals(readFileSync(shimSrc))).toBe(true);
    await runUninstall({ ...opts(), socketPath, purge: true });
    expect(readdirSync(binDir)).toEqual([]);
    expect(readdirSync(confDir)).toEqual(['10-bridge.conf']);
  });

  it.each([
    ['no socket at all', (): string => join(root, 'missing.sock')],
    [
      'a plain file where the socket should be',
      (): string => {
        writeFileSync(join(root, 'file.sock'), '');
        return join(root, 'file.sock');
      },
    ],
  ])('refuses to chain in while no agent answers (%s), touching nothing', async (_what, socket) => {
    writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const socketPath = socket();
    await expect(runInstall({ ...opts(), socketPath, waitTimeoutMs: 5000 })).rejects.toThrow(
      `no meshcni agent answers on ${socketPath}: chaining meshcni in now would fail every new pod`,
    );
    expect(readdirSync(confDir)).toEqual(['10-bridge.conflist']);
    expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).toBe(BRIDGE_LIST);
    expect(readdirSync(binDir)).toEqual([]);
  });

  it('chains in without an agent when told withoutAgent', async () => {
    writeFileSync(join(confDir, '10-bridge.conflist'), BRIDGE_LIST);
    const res = await runInstall({
      ...opts(),
      socketPath: join(root, 'missing.sock'),
      withoutAgent: true,
      waitTimeoutMs: 5000,
    });
    expect(meshcniCount(res.config)).toBe(1);
  });

  it('install gives up with a clear error when no primary config appears in time, removing the shim it copied', async () => {
    const socketPath = await fakeAgent();
    await expect(runInstall({ ...opts(), socketPath, waitTimeoutMs: 300 })).rejects.toThrow(
      `no valid primary CNI config in ${confDir} after 300 ms`,
    );
    expect(readdirSync(binDir)).toEqual([]);
    expect(visible(confDir)).toEqual([]);
  });

  it('a failed install keeps a shim that was there before it (a running agent installed it)', async () => {
    const socketPath = await fakeAgent();
    await installShim(shimSrc, binDir);
    await expect(runInstall({ ...opts(), socketPath, waitTimeoutMs: 300 })).rejects.toThrow(
      /no valid primary CNI config/,
    );
    expect(readdirSync(binDir)).toEqual([SHIM_NAME]);
  });
});
