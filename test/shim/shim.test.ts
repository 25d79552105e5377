// The C shim on its own: CNI skeleton behaviour, forwarding to a stand-in agent (an HTTP server on
// a unix socket in a temp dir), and what it does when the agent is missing, slow or strange.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const SHIM = join(ROOT, 'build/Release/meshcni');

beforeAll(() => {
  execFileSync('make', ['-s', '-C', join(ROOT, 'native/shim')]);
});

interface Run {
  code: number;
  stdout: string;
  json: Record<string, unknown> | null;
  ms: number;
}

function runShim(env: Record<string, string>, stdin: string): Promise<Run> {
  return new Promise((res, rej) => {
    const t0 = Date.now();
    const child = spawn(SHIM, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', rej);
    child.on('close', (code) => {
      let json: Record<string, unknown> | null = null;
      try {
        json = JSON.parse(out) as Record<string, unknown>;
      } catch {
        json = null;
      }
      res({ code: code ?? -1, stdout: out, json, ms: Date.now() - t0 });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

const dirs: string[] = [];
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(() => r(null)));
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function socketPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'mcni-shim-'));
  dirs.push(d);
  return join(d, 'agent.sock');
}

/** A stand-in agent; records what it was sent. */
async function fakeAgent(handle: (body: Record<string, unknown>, req: IncomingMessage, res: ServerResponse) => void): Promise<{ path: string; seen: Record<string, unknown>[] }> {
  const path = socketPath();
  const seen: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => (b += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(b) as Record<string, unknown>;
      seen.push({ ...body, _method: req.method, _url: req.url, _type: req.headers['content-type'] });
      handle(body, req, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, () => r()));
  return { path, seen };
}

const PREV = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/x' }], ips: [{ address: '10.1.2.3/24', interface: 0 }] };
const conf = (over: Record<string, unknown> = {}): string => JSON.stringify({ cniVersion: '1.0.0', name: 'k8s', type: 'meshcni', prevResult: PREV, ...over });
const env = (command: string, over: Record<string, string> = {}): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'abc123',
  CNI_NETNS: '/var/run/netns/x',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web',
  CNI_PATH: '/opt/cni/bin',
  ...over,
});

describe('the shim by itself', () => {
  it('is a static binary that needs nothing but the kernel', () => {
    const head = readFileSync(SHIM).subarray(0, 4096).toString('latin1');
    expect(head.startsWith('\x7fELF')).toBe(true);
    expect(head).not.toContain('/lib64/ld-linux'); // no PT_INTERP: nothing to load at exec
    expect(execFileSync('file', [SHIM], { encoding: 'utf8' })).toMatch(/statically linked/);
  });

  it('answers VERSION without an agent', async () => {
    const r = await runShim({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.1.0"}');
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  it.each([
    ['no CNI_COMMAND', {}, conf(), 4, /CNI_COMMAND is not set/],
    ['an unknown command', { CNI_COMMAND: 'FROB' }, conf(), 4, /CNI_COMMAND 'FROB'/],
    ['ADD without CNI_NETNS', env('ADD', { CNI_NETNS: '' }), conf(), 4, /CNI_NETNS is not set/],
    ['ADD without CNI_CONTAINERID', env('ADD', { CNI_CONTAINERID: '' }), conf(), 4, /CNI_CONTAINERID is not set/],
    ['malformed JSON on stdin', env('ADD'), '{"cniVersion": ', 6, /not a JSON object/],
    ['an unsupported cniVersion', env('ADD'), conf({ cniVersion: '9.9.9' }), 1, /cniVersion '9.9.9' is not supported/],
    ['a relative socketPath', env('ADD'), conf({ socketPath: 'agent.sock' }), 7, /socketPath must be an absolute path/],
  ])('rejects %s with CNI error JSON', async (_what, e, stdin, code, msg) => {
    const r = await runShim(e as Record<string, string>, stdin);
    expect(r.code).toBe(1);
    expect(r.json?.code).toBe(code);
    expect(String(r.json?.msg)).toMatch(msg);
  });

  it('refuses more than 1 MiB of stdin', async () => {
    const r = await runShim(env('ADD'), conf({ pad: 'x'.repeat(1_100_000) }));
    expect(r.json?.code).toBe(5);
    expect(String(r.json?.msg)).toMatch(/exceeds 1 MiB/);
  });

  it('echoes prevResult for an excluded namespace without calling the agent', async () => {
    const agent = await fakeAgent((_b, _q, res) => res.end('{}'));
    const r = await runShim(env('ADD', { CNI_ARGS: 'K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns' }), conf({ socketPath: agent.path, excludeNamespaces: ['kube-system'] }));
    expect(r.code).toBe(0);
    expect(r.json).toEqual(PREV);
    expect(agent.seen).toHaveLength(0);
  });
});

describe('forwarding to the agent', () => {
  it('POSTs the call to /v1/cni and prints the result', async () => {
    const agent = await fakeAgent((b, _q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...(b.config as { prevResult: object }).prevResult, cniVersion: '1.0.0' }));
    });
    const r = await runShim(env('ADD'), conf({ socketPath: agent.path }));
    expect(r.code).toBe(0);
    expect(r.json).toEqual(PREV);
    const sent = agent.seen[0]!;
    expect(sent._method).toBe('POST');
    expect(sent._url).toBe('/v1/cni');
    expect(sent._type).toBe('application/json');
    expect(sent).toMatchObject({ command: 'ADD', containerId: 'abc123', netns: '/var/run/netns/x', ifName: 'eth0', args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web', path: '/opt/cni/bin' });
    expect((sent.config as { prevResult: unknown }).prevResult).toEqual(PREV);
  });

  it("relays the agent's CNI error with exit code 1", async () => {
    const agent = await fakeAgent((_b, _q, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ cniVersion: '1.0.0', code: 7, msg: 'pod shop/web: bad annotation' }));
    });
    const r = await runShim(env('ADD'), conf({ socketPath: agent.path }));
    expect(r.code).toBe(1);
    expect(r.json).toEqual({ cniVersion: '1.0.0', code: 7, msg: 'pod shop/web: bad annotation' });
  });

  it('prints nothing for an empty 200 (DEL)', async () => {
    const agent = await fakeAgent((_b, _q, res) => res.end());
    const r = await runShim(env('DEL'), conf({ socketPath: agent.path }));
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
  });

  it('wraps a non-JSON failure in a CNI error', async () => {
    const agent = await fakeAgent((_b, _q, res) => {
      res.writeHead(502);
      res.end('bad gateway');
    });
    const r = await runShim(env('ADD'), conf({ socketPath: agent.path }));
    expect(r.json).toMatchObject({ code: 999, msg: 'meshcni agent answered HTTP 502', details: 'bad gateway' });
  });
});

describe('when the agent is unreachable or slow', () => {
  it.each([
    ['ADD', 1, 11],
    ['CHECK', 1, 11],
    ['GC', 1, 11],
    ['STATUS', 1, 50],
    ['DEL', 0, undefined],
  ])('%s exits %i with code %s when nothing listens', async (command, exit, code) => {
    const r = await runShim(env(command), conf({ socketPath: socketPath() }));
    expect(r.code).toBe(exit);
    if (code === undefined) expect(r.stdout).toBe('');
    else {
      expect(r.json?.code).toBe(code);
      expect(String(r.json?.details)).toMatch(/No such file or directory/);
    }
  });

  it('gives up after timeoutSeconds instead of hanging', async () => {
    const agent = await fakeAgent(() => undefined); // accepts, never answers
    const r = await runShim(env('ADD'), conf({ socketPath: agent.path, timeoutSeconds: 0.5 }));
    expect(r.json?.code).toBe(11);
    expect(String(r.json?.details)).toMatch(/timed out/);
    expect(r.ms).toBeLessThan(3000);
  });

  it('lets DEL succeed when the agent times out', async () => {
    const agent = await fakeAgent(() => undefined);
    const r = await runShim(env('DEL'), conf({ socketPath: agent.path, timeoutSeconds: 0.3 }));
    expect(r.code).toBe(0);
  });
});
