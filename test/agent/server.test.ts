// The agent's unix-socket endpoint: permissions, root-only peers, strict validation, limits, graceful close.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { CniRequest } from '../../src/agent/cni.js';
import { CniSocketServer, type CniHandler, type SocketServerOptions } from '../../src/agent/endpoint/server.js';
import { until } from '../helpers/wait.js';

const execFileAsync = promisify(execFile);

const log = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Extra = Partial<Omit<SocketServerOptions, 'socketPath' | 'handler'>>;

async function startServer(handler: CniHandler, extra: Extra = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'mcni-srv-'));
  const socketPath = join(dir, 'run', 'cni.sock');
  const server = new CniSocketServer({ socketPath, handler, log, ...extra });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  await server.listen();
  cleanups.push(() => server.close());
  return { server, socketPath, dir };
}

/** A pino logger whose lines land in an array, for tests that check what an operator would see. */
function recordingLog() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  return { lines, log: pino({ level: 'debug' }, sink) };
}

/** A raw client connection; `text()` is everything the server sent until it closed. */
function rawClient(socketPath: string) {
  const sock: Socket = connect({ path: socketPath, allowHalfOpen: true });
  const got: Buffer[] = [];
  let closed = false;
  sock.on('data', (d: Buffer) => got.push(d));
  sock.on('error', () => undefined);
  // The server ending its side is the end of the answer (this client keeps its own side open).
  sock.on('end', () => (closed = true));
  sock.on('close', () => (closed = true));
  cleanups.push(() => void sock.destroy());
  const connected = new Promise<void>((r) => sock.once('connect', () => r()));
  return { sock, connected, text: () => Buffer.concat(got).toString(), closed: () => closed };
}

const rawRequest = (body: string) =>
  `POST /v1/cni HTTP/1.1\r\nHost: meshcni\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

function post(
  socketPath: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path: '/v1/cni', method: 'POST', headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const addRequest = (over: Partial<CniRequest> = {}) =>
  JSON.stringify({
    command: 'ADD',
    containerId: 'c1',
    netns: '/var/run/netns/x',
    ifName: 'eth0',
    args: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=p',
    path: '/opt/cni/bin',
    config: {
      cniVersion: '1.0.0',
      name: 'k8s-pod-network',
      type: 'meshcni',
      prevResult: { cniVersion: '1.0.0', ips: [] },
    },
    ...over,
  });

describe('CNI socket server', () => {
  it('creates a 0600 socket in a 0700 directory owned by the agent', async () => {
    const { socketPath } = await startServer(async () => null);
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(socketPath, '..')).mode & 0o777).toBe(0o700);
    expect(statSync(socketPath).uid).toBe(process.getuid!());
  });

  it('hands a valid request to the handler and returns its result as JSON', async () => {
    const seen: CniRequest[] = [];
    const { socketPath } = await startServer(async (r) => {
      seen.push(r);
      return { cniVersion: r.config.cniVersion, interfaces: [] };
    });
    const res = await post(socketPath, addRequest());
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ cniVersion: '1.0.0', interfaces: [] });
    expect(seen[0]).toMatchObject({ command: 'ADD', containerId: 'c1', ifName: 'eth0' });
  });

  it.each([
    ['not JSON', '{oops', 400, 6, /not valid JSON/],
    ['an array', '[]', 400, 6, /JSON object/],
    ['an unknown field', addRequest({ extra: 1 } as never), 400, 6, /unknown request field 'extra'/],
    ['an unknown command', addRequest({ command: 'FLY' as never }), 400, 4, /unknown CNI command 'FLY'/],
    ['a missing container id', addRequest({ containerId: '' }), 400, 4, /'containerId' is required/],
    [
      'an unsupported cniVersion',
      addRequest({ config: { cniVersion: '9.9.9', name: 'n', type: 'meshcni' } }),
      400,
      1,
      /'9\.9\.9' is not supported/,
    ],
  ])('answers %s with CNI error JSON and keeps serving', async (_name, body, status, code, msg) => {
    let calls = 0;
    const { socketPath } = await startServer(async () => {
      calls++;
      return null;
    });
    const res = await post(socketPath, body);
    expect(res.status).toBe(status);
    const err = JSON.parse(res.body) as { code: number; msg: string };
    expect(err.code).toBe(code);
    expect(err.msg).toMatch(msg);
    expect(calls).toBe(0);
    expect((await post(socketPath, addRequest())).status).toBe(200);
  });

  it('refuses an oversized body with 413 and keeps serving', async () => {
    const { socketPath } = await startServer(async () => null, { maxBodyBytes: 1024 });
    const big = addRequest({ args: 'X='.padEnd(4000, 'y') });
    const res = await post(socketPath, big);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).msg).toMatch(/exceeds the limit of 1024/);
    expect((await post(socketPath, addRequest())).status).toBe(200);
  });

  it('refuses a peer whose uid is not 0, even when file permissions would let it in', async () => {
    const { socketPath, dir } = await startServer(async () => ({ ok: true }));
    // Open the file permissions on purpose: only the SO_PEERCRED check stands in the way now.
    chmodSync(dir, 0o755);
    chmodSync(join(dir, 'run'), 0o755);
    chmodSync(socketPath, 0o666);
    const client = `
      const http = require('node:http');
      const req = http.request({ socketPath: ${JSON.stringify(socketPath)}, path: '/v1/cni', method: 'POST',
        headers: { 'content-type': 'application/json' } }, (res) => { console.log(res.statusCode); });
      req.on('error', (e) => console.log('error ' + e.code));
      req.end(${JSON.stringify(addRequest())});`;
    // Asynchronously: the server lives on this event loop, a synchronous spawn would starve it.
    const r = await execFileAsync(process.execPath, ['-e', client], {
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
      timeout: 10_000,
    });
    // The refusal closes the connection with the request unread: the client may see a reset after the 403.
    expect(r.stdout.trim()).toMatch(/^(403(\nerror (ECONNRESET|EPIPE))?|error ECONNRESET|error EPIPE)$/);
  });

  it('finishes in-flight requests on close, and refuses new connections after', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { server, socketPath } = await startServer(async () => {
      await gate;
      return { done: true };
    });
    const pending = post(socketPath, addRequest());
    while (server.requestsInFlight === 0) await new Promise((r) => setTimeout(r, 5));
    const closing = server.close();
    release();
    const res = await pending;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ done: true });
    await closing;
    await expect(post(socketPath, addRequest())).rejects.toThrow();
  });

  it('answers a client that half-closes its side after sending the request', async () => {
    let calls = 0;
    const { socketPath } = await startServer(async () => {
      calls++;
      return { cniVersion: '1.0.0', interfaces: [] };
    });
    const c = rawClient(socketPath);
    await c.connected;
    c.sock.end(rawRequest(addRequest())); // shutdown(SHUT_WR) right after the request
    await until(c.closed);
    expect(c.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(JSON.parse(c.text().split('\r\n\r\n')[1]!)).toEqual({ cniVersion: '1.0.0', interfaces: [] });
    expect(calls).toBe(1);
  });

  it('logs a client that goes away before its answer at info with the pod, never as an error', async () => {
    const rec = recordingLog();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered = false;
    const { socketPath } = await startServer(
      async () => {
        entered = true;
        await gate;
        return {};
      },
      { log: rec.log },
    );
    const gone = rawClient(socketPath);
    await gone.connected;
    gone.sock.write(rawRequest(addRequest()));
    await until(() => entered);
    gone.sock.destroy();
    release();
    await until(() => rec.lines.some((l) => /went away/.test(l.msg)));
    // Another one leaves in the middle of its body.
    const partial = rawClient(socketPath);
    await partial.connected;
    partial.sock.write(rawRequest(addRequest()).slice(0, -20));
    await new Promise((r) => setTimeout(r, 20));
    partial.sock.destroy();
    expect((await post(socketPath, addRequest())).status).toBe(200);
    const away = rec.lines.find((l) => /went away/.test(l.msg))!;
    expect(away).toMatchObject({ level: 30, namespace: 'default', pod: 'p', containerId: 'c1', command: 'ADD' });
    expect(rec.lines.filter((l) => l.level >= 40)).toEqual([]);
  });

  it('closes connections that send nothing in time, and a stalled client does not hold up others', async () => {
    const { socketPath, server } = await startServer(async () => ({ ok: true }), { requestTimeoutMs: 300 });
    const stalled = rawClient(socketPath);
    await stalled.connected;
    stalled.sock.write('POST /v1/cni HTTP/1.1\r\nContent-Ty'); // and nothing more
    const idle = rawClient(socketPath);
    await idle.connected;
    expect((await post(socketPath, addRequest())).status).toBe(200);
    expect(stalled.closed()).toBe(false);
    await until(() => stalled.closed() && idle.closed());
    expect(stalled.text()).toMatch(/^HTTP\/1\.1 408 /);
    await until(() => server.openConnections === 0);
  });

  it('caps open connections: refuses the excess with 503 and a log line, and serves again once they close', async () => {
    const rec = recordingLog();
    const { socketPath, server } = await startServer(async () => ({ ok: true }), {
      maxConnections: 8,
      requestTimeoutMs: 500,
      log: rec.log,
    });
    const idle = Array.from({ length: 8 }, () => rawClient(socketPath));
    await Promise.all(idle.map((c) => c.connected));
    await until(() => server.openConnections === 8);
    const extra = rawClient(socketPath);
    await until(extra.closed);
    expect(extra.text()).toMatch(/^HTTP\/1\.1 503 /);
    expect(JSON.parse(extra.text().split('\r\n\r\n')[1]!)).toMatchObject({
      code: 11,
      msg: expect.stringMatching(/8 open connections/),
    });
    expect(rec.lines.find((l) => /too many open CNI connections/.test(l.msg))).toMatchObject({
      level: 40,
      maxConnections: 8,
    });
    await until(() => idle.every((c) => c.closed()));
    expect((await post(socketPath, addRequest())).status).toBe(200);
  });

  it.each([
    ['without Content-Length', 'POST /v1/cni HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}', 411],
    [
      'chunked',
      'POST /v1/cni HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      501,
    ],
    ['with a garbled request line', 'HELLO\r\n\r\n', 400],
    [
      'with conflicting Content-Length headers',
      'POST /v1/cni HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      400,
    ],
    ['to another path', 'GET /metrics HTTP/1.1\r\n\r\n', 404],
  ])('refuses a request %s with an HTTP error and CNI error JSON', async (_name, raw, status) => {
    let calls = 0;
    const { socketPath } = await startServer(async () => {
      calls++;
      return null;
    });
    const c = rawClient(socketPath);
    await c.connected;
    c.sock.write(raw);
    await until(c.closed);
    expect(c.text()).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(JSON.parse(c.text().split('\r\n\r\n')[1]!)).toHaveProperty('msg');
    expect(calls).toBe(0);
  });
});

describe('socket directory', () => {
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'mcni-sdir-'));
    cleanups.push(() => rmSync(d, { recursive: true, force: true }));
    return d;
  };
  const listenIn = async (dir: string) => {
    const server = new CniSocketServer({ socketPath: join(dir, 'cni.sock'), handler: async () => null, log });
    await server.listen();
    cleanups.push(() => server.close());
    return join(dir, 'cni.sock');
  };

  it.each([
    ['a shared sticky world-writable directory', 0o1777],
    ['a world-writable directory', 0o777],
    ['a group-writable directory', 0o770],
  ])('refuses %s, naming it and its mode, and leaves it unchanged', async (_name, mode) => {
    const dir = tempDir();
    chmodSync(dir, mode);
    const server = new CniSocketServer({ socketPath: join(dir, 'cni.sock'), handler: async () => null, log });
    await expect(server.listen()).rejects.toThrow(`socket directory ${dir} has mode ${mode.toString(8)}`);
    expect(statSync(dir).mode & 0o7777).toBe(mode);
  });

  it('replaces a stale socket by an atomic rename: no bind name is left, and close removes only ours', async () => {
    const dir = tempDir();
    const stale = new CniSocketServer({ socketPath: join(dir, 'cni.sock'), handler: async () => null, log });
    await stale.listen();
    const sock = await listenIn(dir); // over the stale socket, still listening
    expect(readdirSync(dir)).toEqual(['cni.sock']);
    expect((await post(sock, addRequest())).status).toBe(200);
    await stale.close(); // the path now names the new socket: the old server must leave it alone
    expect(readdirSync(dir)).toEqual(['cni.sock']);
    expect((await post(sock, addRequest())).status).toBe(200);
  });

  it.each([['a root-owned 0755 directory', 0o755]])(
    'uses %s as it is, without changing its mode; the socket is 0600',
    async (_name, mode) => {
      const dir = tempDir();
      chmodSync(dir, mode);
      const sock = await listenIn(dir);
      expect(statSync(dir).mode & 0o7777).toBe(mode);
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      expect((await post(sock, addRequest())).status).toBe(200);
    },
  );

  it('creates a missing directory 0700 even under a permissive umask', async () => {
    const dir = join(tempDir(), 'a', 'b');
    const old = process.umask(0o000);
    try {
      await listenIn(dir);
    } finally {
      process.umask(old);
    }
    expect(statSync(dir).mode & 0o7777).toBe(0o700);
  });

  it('refuses a directory writable by others that is not sticky, naming it and its mode', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    await expect(listenIn(dir)).rejects.toThrow(`socket directory ${dir} has mode 777`);
    expect(statSync(dir).mode & 0o7777).toBe(0o777);
  });

  it('refuses a directory owned by another user', async () => {
    const dir = join(tempDir(), 'theirs');
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, 65534, 65534);
    await expect(listenIn(dir)).rejects.toThrow(`socket directory ${dir} is owned by uid 65534`);
  });
});
