// The agent's unix-socket endpoint: permissions, root-only peers, strict validation, limits, graceful close.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { CniRequest } from '../../src/agent/cni.js';
import { CniSocketServer, type CniHandler } from '../../src/agent/server.js';

const execFileAsync = promisify(execFile);

const log = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startServer(handler: CniHandler, extra: { maxBodyBytes?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'mcni-srv-'));
  const socketPath = join(dir, 'run', 'cni.sock');
  const server = new CniSocketServer({ socketPath, handler, log, ...extra });
  await server.listen();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => server.close());
  return { server, socketPath, dir };
}

function post(socketPath: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
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
    config: { cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'meshcni', prevResult: { cniVersion: '1.0.0', ips: [] } },
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
    ['an unsupported cniVersion', addRequest({ config: { cniVersion: '9.9.9', name: 'n', type: 'meshcni' } }), 400, 1, /'9\.9\.9' is not supported/],
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
    const r = await execFileAsync(process.execPath, ['-e', client], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 });
    expect(r.stdout.trim()).toMatch(/^(403|error ECONNRESET|error EPIPE)$/);
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
});
