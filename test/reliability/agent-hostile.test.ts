// The agent under hostile runtime input and races: bad values answered with code 4 naming the
// value (and DEL of them succeeding), a FIFO as the netns, concurrent requests for one container,
// a full and a read-only state dir. In-process agent, real netns, root.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';
import { AgentWorld, cni } from './helpers.js';

const pool = new NetnsPool('rel');
const worlds: AgentWorld[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
  pool.cleanup();
});

const POD = { namespace: 'shop', name: 'web' };
let ids = 0;
const cid = (): string => `c${process.pid}x${++ids}`;

function world(): AgentWorld {
  const w = new AgentWorld();
  worlds.push(w);
  w.addPod(POD);
  return w;
}

const tablesIn = (ns: string): string => inNetns(ns, 'nft', ['list', 'tables']).trim();
const recordOf = (w: AgentWorld, id: string): string => join(w.stateDir, 'pods', `${id}.json`);

describe('runtime values are validated at the edge', () => {
  const BAD = [
    {
      what: 'a 300-character container id',
      call: { containerId: 'a'.repeat(300) },
      names: /CNI_CONTAINERID .*longer than 200/,
    },
    { what: 'a container id with a slash', call: { containerId: 'abc/../x' }, names: /CNI_CONTAINERID "abc\/\.\.\/x"/ },
    {
      what: 'a relative netns path',
      call: { netns: 'var/run/netns/x' },
      names: /CNI_NETNS "var\/run\/netns\/x" must be an absolute path/,
    },
    { what: 'a netns path with a NUL byte', call: { netns: '/var/run/netns/a\u0000b' }, names: /CNI_NETNS .* NUL/ },
    {
      what: 'a 16-byte interface name',
      call: { ifName: 'eth0123456789012' },
      names: /CNI_IFNAME "eth0123456789012" is longer than 15 bytes/,
    },
    { what: "interface name '..'", call: { ifName: '..' }, names: /CNI_IFNAME "\.\."/ },
    { what: 'an interface name with a colon', call: { ifName: 'eth0:1' }, names: /CNI_IFNAME "eth0:1"/ },
  ];

  it.each(BAD)('ADD and CHECK of $what fail with code 4 naming it; DEL of it succeeds', async ({ call, names }) => {
    const w = world();
    await w.start();
    const ns = pool.create();
    const base = { containerId: cid(), netns: netnsPath(ns), pod: POD, ...call };
    for (const command of ['ADD', 'CHECK']) {
      const r = await cni(w.socketPath, { command, ...base });
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ code: 4 });
      expect(String(r.body!.msg)).toMatch(names);
    }
    const del = await cni(w.socketPath, { command: 'DEL', ...base });
    expect(del.status).toBe(200);
    expect(
      w.logs.lines.some((l) => l.msg === 'DEL with an invalid value: nothing of it can be ours, nothing to do'),
    ).toBe(true);
    expect(tablesIn(ns)).toBe('');
    // Still serving.
    const ok = await cni(w.socketPath, { command: 'ADD', containerId: cid(), netns: netnsPath(ns), pod: POD });
    expect(ok.status).toBe(200);
  });

  it('answers CHECK of a missing netns with code 4, as ADD does', async () => {
    const w = world();
    await w.start();
    const missing = `/var/run/netns/mcni-none-${process.pid}`;
    for (const command of ['ADD', 'CHECK']) {
      const r = await cni(w.socketPath, { command, containerId: cid(), netns: missing, pod: POD });
      expect(r.body).toMatchObject({ code: 4 });
      expect(String(r.body!.msg)).toContain(missing);
    }
  });

  it('refuses a FIFO as the netns at once, and keeps serving other pods', async () => {
    const w = world();
    await w.start();
    const fifo = join(w.dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // More FIFO ADDs than libuv has worker threads (4): each used to park a worker in open().
    const refused = await Promise.all(
      Array.from({ length: 8 }, () => cni(w.socketPath, { command: 'ADD', containerId: cid(), netns: fifo, pod: POD })),
    );
    for (const r of refused) {
      expect(r.body).toMatchObject({ code: 4 });
      expect(String(r.body!.msg)).toMatch(/not a network namespace/);
    }
    const ns = pool.create();
    const ok = await cni(w.socketPath, { command: 'ADD', containerId: cid(), netns: netnsPath(ns), pod: POD });
    expect(ok.status).toBe(200);
    expect(tablesIn(ns)).toMatch(/table ip nat/);
  });

  it('logs a failure with namespace, pod and containerId fields and err as {type, message, stack}', async () => {
    const w = world();
    await w.start();
    const id = cid();
    await cni(w.socketPath, {
      command: 'ADD',
      containerId: id,
      netns: `/var/run/netns/mcni-none-${process.pid}`,
      pod: POD,
    });
    const line = w.logs.lines.find((l) => l.msg === 'CNI request failed')!;
    expect(line).toMatchObject({ namespace: 'shop', pod: 'web', containerId: id, command: 'ADD' });
    const err = line.err as Record<string, unknown>;
    expect(Object.keys(err).sort()).toEqual(['code', 'message', 'stack', 'type']);
    expect(err.type).toBe('CniError');
  });
});

describe('requests for one container are serialised', () => {
  it('a failing ADD racing a good ADD of the same container does not take the good one’s record', async () => {
    const w = world();
    await w.start();
    for (let i = 0; i < 5; i++) {
      const ns = pool.create();
      const id = cid();
      const bad = `/var/run/netns/mcni-none-${process.pid}`;
      const [good, failed] = await Promise.all([
        cni(w.socketPath, { command: 'ADD', containerId: id, netns: netnsPath(ns), pod: POD }),
        cni(w.socketPath, { command: 'ADD', containerId: id, netns: bad, pod: POD }),
      ]);
      expect(good.status).toBe(200);
      expect(failed.body).toMatchObject({ code: 4 });
      expect(existsSync(recordOf(w, id))).toBe(true);
      expect(w.agent!.state.get(id)?.netns).toBe(netnsPath(ns));
      expect(
        (await cni(w.socketPath, { command: 'CHECK', containerId: id, netns: netnsPath(ns), pod: POD })).status,
      ).toBe(200);
    }
  });

  it('an ADD racing a DEL that was acknowledged last leaves no record and no rules', async () => {
    const w = world();
    await w.start();
    const delLast: string[] = [];
    for (let i = 0; i < 5; i++) {
      const ns = pool.create();
      const id = cid();
      const call = { containerId: id, netns: netnsPath(ns), pod: POD };
      const order: string[] = [];
      await Promise.all([
        cni(w.socketPath, { command: 'ADD', ...call }).then((r) => order.push(`ADD ${r.status}`)),
        cni(w.socketPath, { command: 'DEL', ...call }).then((r) => order.push(`DEL ${r.status}`)),
      ]);
      if (order[1] !== 'DEL 200') continue; // the ADD came last: its outcome stands, nothing to assert
      delLast.push(id);
      expect(existsSync(recordOf(w, id))).toBe(false);
      expect(w.agent!.state.get(id)).toBeUndefined();
      expect(tablesIn(ns)).toBe('');
    }
    expect(delLast.length).toBeGreaterThan(0);
    // After a restart the agent knows nothing of these containers.
    await w.agent!.stop();
    const again = await w.start();
    expect(delLast.filter((id) => again.state.get(id) !== undefined)).toEqual([]);
  });
});

describe('the state directory', () => {
  it('full (ENOSPC): ADD fails naming the state dir and errno, programs nothing, leaks no temp file; then recovers', async () => {
    const w = world();
    w.stateDir = w.tmpfs('64k');
    await w.start();
    // Fill it to the last byte.
    spawnSync('dd', ['if=/dev/zero', `of=${join(w.stateDir, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
    const ns = pool.create();
    for (let i = 0; i < 3; i++) {
      const r = await cni(w.socketPath, { command: 'ADD', containerId: cid(), netns: netnsPath(ns), pod: POD });
      expect(r.body).toMatchObject({ code: 5 });
      expect(String(r.body!.msg)).toContain(`state directory ${join(w.stateDir, 'pods')}`);
      expect(String(r.body!.msg)).toContain('ENOSPC');
    }
    expect(tablesIn(ns)).toBe('');
    expect(readdirSync(join(w.stateDir, 'pods'))).toEqual([]);
    spawnSync('rm', ['-f', join(w.stateDir, 'filler')]);
    const id = cid();
    expect((await cni(w.socketPath, { command: 'ADD', containerId: id, netns: netnsPath(ns), pod: POD })).status).toBe(
      200,
    );
    expect(existsSync(recordOf(w, id))).toBe(true);
  });

  it('removes temp files an interrupted write left behind, at start', async () => {
    const w = world();
    mkdirSync(join(w.stateDir, 'pods'), { recursive: true });
    const leftover = join(w.stateDir, 'pods', 'abc.json.4242.7.tmp');
    writeFileSync(leftover, '{"containerId":');
    await w.start();
    expect(existsSync(leftover)).toBe(false);
  });

  it('read-only: start-up fails saying EROFS and naming the path', async () => {
    const w = world();
    w.stateDir = w.tmpfs('64k');
    w.remount(w.stateDir, 'ro');
    const a = w.makeAgent();
    await expect(a.start()).rejects.toThrow(
      new RegExp(`state directory ${join(w.stateDir, 'pods')}.*EROFS.*read-only`),
    );
  });

  it('read-only with the pods directory present: start-up still fails saying EROFS', async () => {
    const w = world();
    w.stateDir = w.tmpfs('64k');
    mkdirSync(join(w.stateDir, 'pods'));
    w.remount(w.stateDir, 'ro');
    await expect(w.makeAgent().start()).rejects.toThrow(/EROFS/);
  });

  it('read-only after start: DEL still succeeds, and the record is forgotten in memory', async () => {
    const w = world();
    w.stateDir = w.tmpfs('64k');
    await w.start();
    const ns = pool.create();
    const id = cid();
    expect((await cni(w.socketPath, { command: 'ADD', containerId: id, netns: netnsPath(ns), pod: POD })).status).toBe(
      200,
    );
    w.remount(w.stateDir, 'ro');
    expect((await cni(w.socketPath, { command: 'DEL', containerId: id, netns: netnsPath(ns), pod: POD })).status).toBe(
      200,
    );
    expect(w.agent!.state.get(id)).toBeUndefined();
  });
});
