// The native boundary: namespace identity and refusal, applies in many namespaces at once, dumps,
// peer credentials. Root, real network namespaces.
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, statSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  applyNetlinkBatch,
  applyNetlinkBatchInline,
  checkPodNetns,
  netlinkDump,
  netnsIdentity,
  ownNetnsIdentity,
  peerCredentials,
  NetlinkBatchError,
} from '../../src/kernel/index.js';
import { applyTables, readTables } from '../../src/nft/apply.js';
import { writeDumpRequest } from '../../src/nft/messages.js';
import { NetlinkWriter, parseMessages } from '../../src/nft/netlink.js';
import { replaceTablesBatch } from '../../src/nft/transaction.js';
import { encodeXtRuleset } from '../../src/nft/xtables/encode.js';
import { parseRestore } from '../../src/nft/xtables/parse.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';

const fixture = execFileSync('cat', [new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url).pathname], {
  encoding: 'utf8',
});
const tables = encodeXtRuleset(parseRestore(fixture, 'ip'));
const pool = new NetnsPool('k');
afterEach(() => pool.cleanup());
afterAll(() => pool.cleanup());

/** The netns inode of every thread of this process: all must be the same, the host's. */
function threadNetnsInodes(): Set<number> {
  const inodes = new Set<number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      inodes.add(statSync(`/proc/self/task/${tid}/ns/net`).ino);
    } catch {
      // a thread that exited between readdir and stat
    }
  }
  return inodes;
}

function canOpen(path: string): boolean {
  try {
    closeSync(openSync(path, 'r'));
    return true;
  } catch {
    return false;
  }
}

const hostRuleset = (): string => execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' });

/** Both ways of committing a batch, as promises: the thread pool's and the inline one. */
const COMMITS: [string, (path: string, batch: Buffer) => Promise<unknown>][] = [
  ['thread pool', (path, batch) => applyNetlinkBatch(path, batch)],
  ['inline', async (path, batch) => applyNetlinkBatchInline(path, batch)],
];

describe('opening a network namespace', () => {
  it('identifies a namespace the same through /var/run/netns and /proc/PID/ns/net', async () => {
    const ns = pool.create();
    const child = spawn('ip', ['netns', 'exec', ns, 'sleep', '30'], { stdio: 'ignore' });
    try {
      // `ip netns exec` execs sleep in place, so the child's pid is the sleeper's once it has entered.
      let viaProc: { dev: bigint; ino: bigint } | undefined;
      const byPath = netnsIdentity(netnsPath(ns));
      for (let i = 0; i < 200 && !viaProc; i++) {
        const id = netnsIdentity(`/proc/${child.pid}/ns/net`);
        if (id.ino === byPath.ino) viaProc = id;
        else await new Promise((r) => setTimeout(r, 10));
      }
      expect(viaProc).toEqual(byPath);
      expect(byPath).not.toEqual(ownNetnsIdentity());
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('tells two namespaces apart', () => {
    const a = pool.create();
    const b = pool.create();
    expect(netnsIdentity(netnsPath(a))).not.toEqual(netnsIdentity(netnsPath(b)));
  });

  it.each<[string, string, string, RegExp]>([
    [
      'a missing path',
      '/var/run/netns/mcni-does-not-exist',
      'ENOENT',
      /cannot open network namespace \/var\/run\/netns\/mcni-does-not-exist/,
    ],
    ['a regular file', '/etc/hostname', 'ENOTNETNS', /\/etc\/hostname is not a network namespace/],
    ['another kind of namespace', '/proc/self/ns/mnt', 'ENOTNETNS', /\/proc\/self\/ns\/mnt is not a network namespace/],
    ['a relative path', 'var/run/netns/x', 'EINVAL', /must be absolute/],
    [
      "the agent's own namespace",
      '/proc/self/ns/net',
      'EHOSTNETNS',
      /refusing to program \/proc\/self\/ns\/net: it is the host's own/,
    ],
    // In a sandbox whose PID 1 belongs to another user namespace even root gets EACCES: still refused.
    canOpen('/proc/1/ns/net')
      ? ["PID 1's namespace", '/proc/1/ns/net', 'EHOSTNETNS', /host's own network namespace/]
      : ["PID 1's namespace", '/proc/1/ns/net', 'EACCES', /cannot open network namespace \/proc\/1\/ns\/net/],
  ])('refuses %s with a clear error', async (_what, path, code, message) => {
    const before = hostRuleset();
    for (const [how, commit] of COMMITS) {
      const err = (await commit(path, replaceTablesBatch(tables).buffer).catch((e: unknown) => e)) as Error & {
        code: string;
      };
      expect(err, how).toBeInstanceOf(Error);
      expect(err.code, how).toBe(code);
      expect(err.message, how).toMatch(message);
    }
    expect(() => checkPodNetns(path)).toThrow(message);
    expect(hostRuleset()).toBe(before);
  });

  it('refuses the host namespace even when it is bind-mounted under /var/run/netns', async () => {
    const name = `mcni-hostalias-${process.pid}`;
    writeFileSync(`/var/run/netns/${name}`, '');
    try {
      execFileSync('mount', ['--bind', '/proc/self/ns/net', `/var/run/netns/${name}`]);
      const err = (await applyTables(`/var/run/netns/${name}`, tables).catch((e: unknown) => e)) as { code?: string };
      expect(err.code).toBe('EHOSTNETNS');
      const inline = (() => {
        try {
          applyNetlinkBatchInline(`/var/run/netns/${name}`, replaceTablesBatch(tables).buffer);
        } catch (e) {
          return e as { code?: string };
        }
        return {};
      })();
      expect(inline.code).toBe('EHOSTNETNS');
    } finally {
      execFileSync('umount', [`/var/run/netns/${name}`]);
      rmSync(`/var/run/netns/${name}`);
    }
  });

  it('still refuses the host namespace on worker threads while the JS thread is inside pods for inline commits', async () => {
    // An inline commit puts the JS thread (and with it /proc/self/ns/net) in a pod's namespace for a
    // moment. Worker threads checking the host alias at that moment must still see it as the host's:
    // the host's identity is read once at load, never from /proc/self per call. The alias gets only
    // an empty, oddly named table, so even a regression could not disturb the host's traffic.
    const name = `mcni-hostrace-${process.pid}`;
    const alias = `/var/run/netns/${name}`;
    const probe = replaceTablesBatch(
      [{ table: { family: 'inet', name: `mcni_probe_${process.pid}` }, chains: [], sets: [], rules: [] }],
      1,
      'create',
    ).buffer;
    const pods = Array.from({ length: 20 }, () => netnsPath(pool.create()));
    const before = hostRuleset();
    writeFileSync(alias, '');
    try {
      execFileSync('mount', ['--bind', '/proc/self/ns/net', alias]);
      for (let round = 0; round < 10; round++) {
        const hostTries = Array.from({ length: 16 }, () =>
          applyNetlinkBatch(alias, probe).then(
            () => 'applied',
            (e: { code?: string }) => e.code,
          ),
        );
        for (const p of pods) applyNetlinkBatchInline(p, replaceTablesBatch(tables, 1, 'replace').buffer);
        expect(new Set(await Promise.all(hostTries))).toEqual(new Set(['EHOSTNETNS']));
      }
    } finally {
      execFileSync('umount', [alias]);
      rmSync(alias);
      if (hostRuleset().includes(`mcni_probe_${process.pid}`))
        execFileSync('nft', ['delete', 'table', 'inet', `mcni_probe_${process.pid}`]);
    }
    expect(hostRuleset()).toBe(before);
    expect(threadNetnsInodes().size).toBe(1);
  });
});

describe('applying batches', () => {
  it('applies 200 transactions into 200 namespaces concurrently, and the process stays in its own', async () => {
    const before = ownNetnsIdentity();
    const hostBefore = hostRuleset();
    const names = Array.from({ length: 200 }, () => pool.create());
    const results = await Promise.all(names.map((n) => applyTables(netnsPath(n), tables)));
    expect(results.every((r) => r.messages > 0)).toBe(true);
    // Every namespace holds the full ruleset, read back by the oracle's tool for a sample and by
    // our decoder for all of them.
    const read = await Promise.all(names.map((n) => readTables(netnsPath(n))));
    for (const t of read) expect(t.find((x) => x.table.name === 'nat')?.rules).toHaveLength(21);
    for (const n of [names[0]!, names[99]!, names[199]!]) {
      expect(inNetns(n, 'iptables-nft-save', ['-t', 'nat'])).toContain(
        '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
      );
    }
    expect(ownNetnsIdentity()).toEqual(before);
    const inodes = threadNetnsInodes();
    expect(inodes.size).toBe(1);
    expect([...inodes][0]).toBe(Number(before.ino));
    expect(hostRuleset()).toBe(hostBefore);
  });

  it('commits inline exactly what the thread pool commits', () => {
    const a = pool.create();
    const b = pool.create();
    const batch = replaceTablesBatch(tables, 1, 'create').buffer;
    const r = applyNetlinkBatchInline(netnsPath(a), batch);
    expect(r.messages).toBeGreaterThan(10);
    return applyNetlinkBatch(netnsPath(b), batch).then((rb) => {
      expect(rb.messages).toBe(r.messages);
      const save = (n: string) => inNetns(n, 'iptables-nft-save', ['-t', 'nat']).replace(/^#.*\n/gm, '');
      expect(save(a)).toContain('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001');
      expect(save(a)).toBe(save(b));
    });
  });

  it.each(COMMITS)(
    'reports the index, seq, errno name and kernel message of a rejected message (%s)',
    async (_how, commit) => {
      const ns = pool.create();
      const batch = replaceTablesBatch([
        {
          table: { family: 'ip', name: 'nat' },
          chains: [{ family: 'ip', table: 'nat', name: 'A' }],
          sets: [],
          rules: [
            {
              family: 'ip',
              table: 'nat',
              chain: 'A',
              exprs: [{ type: 'verdict', verdict: { code: 'jump', chain: 'NOPE' } }],
            },
          ],
        },
      ]);
      const err = (await commit(netnsPath(ns), batch.buffer).catch((e: unknown) => e)) as NetlinkBatchError;
      expect(err).toBeInstanceOf(NetlinkBatchError);
      expect(err.code).toBe('ENOENT');
      expect(err.errno).toBe(2);
      expect(batch.descriptions[err.index]).toBe('add rule ip nat A #1');
      expect(err.seq).toBe(batch.firstSeq + err.index);
      expect(err.errors.length).toBeGreaterThanOrEqual(1);
      expect(inNetns(ns, 'nft', ['list', 'ruleset']).trim()).toBe('');
    },
  );

  it.each(COMMITS)(
    'rejects a buffer that is not netlink messages before sending anything (%s)',
    async (_how, commit) => {
      const ns = pool.create();
      const err = (await commit(netnsPath(ns), Buffer.from([1, 2, 3])).catch((e: unknown) => e)) as {
        code?: string;
        message: string;
      };
      expect(err.code).toBe('EINVAL');
      expect(err.message).toMatch(/well-formed netlink messages/);
    },
  );
});

describe('dumping', () => {
  it('returns every table of the namespace and nothing after NLMSG_DONE', async () => {
    const ns = pool.create();
    inNetns(ns, 'iptables-nft-restore', [], fixture);
    inNetns(ns, 'nft', ['add', 'table', 'inet', 'extra']);
    const w = new NetlinkWriter(64);
    writeDumpRequest(w, 'GETTABLE', 1, 'unspec');
    const reply = await netlinkDump(netnsPath(ns), w.toBuffer());
    const msgs = parseMessages(reply);
    expect(msgs.length).toBe(2);
    expect(msgs.every((m) => m.type !== 3)).toBe(true);
  });
});

describe('peer credentials', () => {
  it("reads the connecting process's uid and pid from a unix socket", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcni-cred-'));
    const path = join(dir, 's.sock');
    const accepted = new Promise<Socket>((resolve) => {
      const server = createServer((s) => {
        resolve(s);
        server.close();
      });
      server.listen(path);
    });
    const client = connect(path);
    try {
      const s = await accepted;
      const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
      expect(peerCredentials(fd)).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
      s.destroy();
    } finally {
      client.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('throws naming the fd when it is not a socket', () => {
    expect(() => peerCredentials(0x7fff)).toThrow(/SO_PEERCRED.*32767/);
  });
});
