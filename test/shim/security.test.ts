// The shim against the findings of the second security audit (issue 22): who may answer for the agent,
// what a damaged pod index means, one reading of every input the agent reads too, error text that is
// always valid UTF-8 JSON, and exclusion in linear time. Each case failed on the shim before the fix.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseCniArgs } from '../../src/agent/cni.js';
import { fnv1a32 } from '../../src/agent/state/pod-index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** MESHCNI_SHIM: another build of the shim (the sanitizer run sets it). */
const SHIM = process.env.MESHCNI_SHIM ?? join(ROOT, 'build/Release/meshcni');
const NOBODY = 65534;

type Run = { code: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: string; ms: number };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

beforeAll(() => {
  if (!process.env.MESHCNI_SHIM) execFileSync('make', ['-s', '-C', join(ROOT, 'native/shim')], { stdio: 'inherit' });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcni-shimsec-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `argv` (the shim, or a shell that execs it) with `env` and `stdin`; stdout kept as bytes. */
function run(argv: string[], env: Record<string, string>, stdin: string): Promise<Run> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const [cmd = SHIM, ...rest] = argv;
    const child = spawn(cmd, rest, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {});
    child.on('error', fail);
    child.on('close', (code, signal) =>
      done({
        code,
        signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString(),
        ms: performance.now() - t0,
      }),
    );
    child.stdin.end(stdin);
  });
}

const runShim = (env: Record<string, string>, stdin: string) => run([SHIM], env, stdin);

const podEnv = (command: string, extra: Record<string, string> = {}) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/pod1',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-7d9;K8S_POD_UID=u-1',
  CNI_PATH: '/opt/cni/bin',
  ...extra,
});

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name: 'k8s-pod-network',
  type: 'meshcni',
  ...extra,
});

/** The CNI error the shim printed: the bytes must be valid UTF-8 and one JSON object. */
function cniError(r: Run): { code: number; msg: string; details?: string } {
  expect(r.code, r.stdout.toString() + r.stderr).toBe(1);
  const text = new TextDecoder('utf-8', { fatal: true }).decode(r.stdout);
  return JSON.parse(text) as { code: number; msg: string; details?: string };
}

/** A root-owned agent that records whether anyone called it and answers every call with a result. */
async function rootAgent(): Promise<{ socketPath: string; calls: () => number }> {
  const socketPath = join(tempDir(), 'cni.sock');
  let calls = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    calls++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.on('data', () => {
      const body = '{"cniVersion":"1.1.0"}';
      if (!s.writableEnded) s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    });
  });
  await new Promise<void>((ok, bad) => server.once('error', bad).listen(socketPath, () => ok()));
  cleanups.push(
    () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  );
  return { socketPath, calls: () => calls };
}

const FORGED = '{"cniVersion":"1.1.0","ips":[{"address":"6.6.6.6/32"}]}';

/** A stand-in "agent" run as uid nobody in a directory it may write: what a local non-root user can do. */
async function nobodyAgent(dir: string): Promise<string> {
  const socketPath = join(dir, 'cni.sock');
  const script = `
    const net = require('node:net');
    const body = ${JSON.stringify(FORGED)};
    const answer = 'HTTP/1.1 200 OK\\r\\nContent-Length: ' + body.length + '\\r\\n\\r\\n' + body;
    net.createServer((s) => s.on('data', () => s.end(answer)))
      .listen(${JSON.stringify(socketPath)}, () => console.log('ready'));`;
  const child = spawn(process.execPath, ['-e', script], {
    uid: NOBODY,
    gid: NOBODY,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  cleanups.push(
    () =>
      new Promise<void>((ok) => {
        if (child.exitCode !== null || child.signalCode !== null) return ok();
        child.once('close', () => ok());
        child.kill('SIGKILL');
      }),
  );
  await new Promise<void>((ok, bad) => {
    child.stdout.once('data', () => ok());
    child.once('exit', (code) => bad(new Error(`the nobody agent exited with ${code}`)));
  });
  return socketPath;
}

describe('who may answer for the agent', () => {
  const cases = [
    { name: 'a socket file a non-root user bound', chownToRoot: false, says: /not a socket owned by root/ },
    { name: 'a root-owned socket file with a non-root listener', chownToRoot: true, says: /runs as uid 65534/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}: ADD fails with "try again later", never with the user's result`, async () => {
      const dir = tempDir();
      chmodSync(dir, 0o777);
      const socketPath = await nobodyAgent(dir);
      if (c.chownToRoot) chownSync(socketPath, 0, 0);
      const r = await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath, podIndexPath: join(dir, 'none') })));
      expect(r.stdout.toString()).not.toContain('6.6.6.6');
      const e = cniError(r);
      expect(e.code).toBe(11);
      expect(e.details).toMatch(c.says);
    });
  }

  it('still talks to a root listener on a root-owned socket', async () => {
    const agent = await rootAgent();
    const r = await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath })));
    expect(r.code, r.stderr).toBe(0);
    expect(agent.calls()).toBe(1);
  });
});

/** A pod index file as the agent writes it, with the given record lines. */
function podIndex(dir: string, records: string[]): string {
  const path = join(dir, 'pods.index');
  const body = Buffer.from(`meshcni-pod-index 1\npods ${records.length}\n${records.map((l) => `${l}\n`).join('')}`);
  const sum = fnv1a32(body).toString(16).padStart(8, '0');
  writeFileSync(path, Buffer.concat([body, Buffer.from(`end ${sum}\n`)]), { mode: 0o600 });
  return path;
}

describe('pod index: a pod listed twice fails closed', () => {
  const cases = [
    { name: 'S after C', records: ['C shop cart-7d9 u-1', 'S shop cart-7d9 u-1'] },
    { name: 'C after S', records: ['S shop cart-7d9 u-1', 'C shop cart-7d9 u-1'] },
    { name: 'S twice', records: ['S shop cart-7d9 u-1', 'S shop cart-7d9 u-1'] },
  ];
  for (const c of cases) {
    it(`${c.name}: ADD during an outage is refused (code 11), not passed`, async () => {
      const dir = tempDir();
      const podIndexPath = podIndex(dir, c.records);
      const text = JSON.stringify(conf({ socketPath: join(dir, 'gone.sock'), podIndexPath }));
      const r = await runShim(podEnv('ADD'), text);
      expect(cniError(r).code).toBe(11);
      expect(r.stderr).toMatch(/lists a pod twice/);
    });
  }

  it('one S line for the pod still passes it during an outage', async () => {
    const dir = tempDir();
    const podIndexPath = podIndex(dir, ['C shop other u-2', 'S shop cart-7d9 u-1']);
    const r = await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: join(dir, 'gone.sock'), podIndexPath })));
    expect(r.code, r.stdout.toString() + r.stderr).toBe(0);
  });
});

describe('one reading of every input the agent reads too', () => {
  it('refuses \\u0000 inside a key: it no longer reads "excludeNamespaces\\u0000x" as excludeNamespaces', async () => {
    const agent = await rootAgent();
    const text = JSON.stringify(conf({ socketPath: agent.socketPath, 'excludeNamespaces\u0000x': ['shop'] }));
    const e = cniError(await runShim(podEnv('ADD'), text));
    expect(e.code).toBe(6);
    expect(e.details).toMatch(/\\u0000/);
    expect(agent.calls()).toBe(0);
  });

  it('refuses a CNI_ARGS key given twice, as the agent does', async () => {
    const agent = await rootAgent();
    const args = 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-7d9;K8S_POD_NAMESPACE=kube-system';
    const text = JSON.stringify(conf({ socketPath: agent.socketPath, excludeNamespaces: ['shop'] }));
    const e = cniError(await runShim(podEnv('ADD', { CNI_ARGS: args }), text));
    expect(e.code).toBe(4);
    expect(e.msg).toContain("'K8S_POD_NAMESPACE' more than once");
    expect(agent.calls()).toBe(0);
    expect(() => parseCniArgs(args)).toThrow(/K8S_POD_NAMESPACE.*more than once/);
  });

  it('refuses a CNI_NETNS that is not UTF-8 instead of forwarding bytes the agent would read otherwise', async () => {
    const agent = await rootAgent();
    const text = JSON.stringify(conf({ socketPath: agent.socketPath }));
    const env = podEnv('ADD');
    delete (env as Partial<typeof env>).CNI_NETNS;
    const r = await run(['/bin/bash', '-c', `CNI_NETNS=$(printf '/var/run/netns/p\\xff') exec "$0"`, SHIM], env, text);
    const e = cniError(r);
    expect(e.code).toBe(4);
    expect(e.msg).toBe('CNI_NETNS is not valid UTF-8');
    expect(agent.calls()).toBe(0);
  });
});

describe('error text', () => {
  // bad_key cuts the value's JSON form at 160 bytes: with two-byte characters the cut falls inside one.
  for (const pad of [0, 1]) {
    it(`is valid UTF-8 JSON when a cut falls inside a character (offset ${pad})`, async () => {
      const value = 'x'.repeat(pad) + 'é'.repeat(200);
      const e = cniError(await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: value }))));
      expect(e.code).toBe(7);
      expect(e.msg).toMatch(/^socketPath "x*é+/);
    });
  }
});

describe('namespace exclusion', () => {
  it('takes linear time: 60,000 excluded namespaces cost well under 2 s per exec', async () => {
    const names = Array.from({ length: 60_000 }, (_, i) => `ns-${i}`);
    const socketPath = join(tempDir(), 'gone.sock');
    const text = JSON.stringify(conf({ socketPath, excludeNamespaces: [...names, 'shop'] }));
    const r = await runShim(podEnv('CHECK'), text);
    expect(r.code, r.stdout.toString() + r.stderr).toBe(0); // excluded: nothing to check, no agent
    expect(r.ms).toBeLessThan(2000);
  });
});

describe('pod index directory', () => {
  const cases = [
    { name: 'world-writable', mode: 0o777, uid: 0 },
    { name: 'sticky world-writable', mode: 0o1777, uid: 0 },
    { name: 'group-writable', mode: 0o770, uid: 0 },
    { name: 'owned by another user', mode: 0o755, uid: NOBODY },
  ];
  for (const c of cases) {
    it(`${c.name}: the index in it is not trusted, and the error names the directory`, async () => {
      const dir = join(tempDir(), 'index');
      const podIndexPath = podIndex((mkdirSync(dir), dir), ['S shop cart-7d9 u-1']);
      chmodSync(dir, c.mode);
      chownSync(dir, c.uid, c.uid);
      const text = JSON.stringify(conf({ socketPath: join(dir, 'gone.sock'), podIndexPath }));
      const r = await runShim(podEnv('ADD'), text);
      expect(cniError(r).code).toBe(11);
      expect(r.stderr).toContain(`pod index directory ${dir} is not root's`);
    });
  }
});
