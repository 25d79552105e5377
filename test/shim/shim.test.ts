// The C shim as the container runtime sees it: exec with CNI_* env and a config on stdin, against a
// stand-in agent (node:http, or a raw socket for answers node:http will not produce) on a unix socket.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** MESHCNI_SHIM: another build of the shim to run these tests against (sanitizers.test.ts sets it). */
const SHIM = process.env.MESHCNI_SHIM ?? join(ROOT, 'build/Release/meshcni');
const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

type Json = Record<string, unknown>;
type Run = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number };
type Seen = { method: string; url: string; headers: IncomingHttpHeaders; body: string };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

beforeAll(() => {
  execFileSync('make', ['-s', '-C', join(ROOT, 'native/shim')], { stdio: 'inherit' });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcni-shim-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function closeServer(server: Server | ReturnType<typeof createHttpServer>, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((done) => server.close(() => done()));
}

function listen(server: Server | ReturnType<typeof createHttpServer>, path: string): Promise<void> {
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(path, () => done());
  });
}

/** A node:http agent on a unix socket; `answer` decides each reply, the requests are recorded. */
async function httpAgent(answer: (req: Seen, res: ServerResponse) => void) {
  const socketPath = join(tempDir(), 'cni.sock');
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(s);
      answer(s, res);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await listen(server, socketPath);
  cleanups.push(() => closeServer(server, sockets));
  return { socketPath, seen };
}

/** An agent that answers 200 with `result` (JSON) to everything. */
const resultAgent = (result: unknown) =>
  httpAgent((_req, res) => {
    const text = JSON.stringify(result);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });

/** A raw stream server: `onConnection` writes whatever bytes a test needs. */
async function rawAgent(onConnection: (s: Socket) => void) {
  const socketPath = join(tempDir(), 'raw.sock');
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  await listen(server, socketPath);
  cleanups.push(() => closeServer(server, sockets));
  return { socketPath };
}

/** Replies with `bytes` once the request head has arrived. */
const afterRequest =
  (bytes: string | Buffer, end = true) =>
  (s: Socket) => {
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (!got.includes('\r\n\r\n') || s.writableEnded) return;
      if (end) s.end(bytes);
      else s.write(bytes);
    });
  };

function runShim(env: Record<string, string>, stdin: string | Buffer = ''): Promise<Run> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn(SHIM, [], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {}); // the shim may stop reading an oversized config
    child.on('error', fail);
    child.on('close', (code, signal) =>
      done({
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        ms: performance.now() - t0,
      }),
    );
    child.stdin.end(stdin);
  });
}

const podEnv = (command: string, extra: Record<string, string> = {}) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/pod1',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-7d9',
  CNI_PATH: '/opt/cni/bin',
  ...extra,
});

const PREV = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/pod1' }],
  ips: [{ address: '10.1.0.5/24', interface: 0 }],
};

const conf = (extra: Json = {}): Json => ({ cniVersion: '1.1.0', name: 'k8s-pod-network', type: 'meshcni', ...extra });

function cniError(run: Run): { cniVersion: string; code: number; msg: string; details?: string } {
  expect(run.code, run.stdout + run.stderr).toBe(1);
  return JSON.parse(run.stdout) as { cniVersion: string; code: number; msg: string; details?: string };
}

const MISSING = '/nonexistent/meshcni/cni.sock';

// The shipped build's properties; another build (MESHCNI_SHIM, the sanitizer one) is not static.
describe.skipIf(process.env.MESHCNI_SHIM !== undefined)('build', () => {
  it('is a static executable with no ELF interpreter', () => {
    const headers = execFileSync('readelf', ['-l', SHIM]).toString();
    expect(headers).not.toMatch(/INTERP/);
    const ldd = spawnSync('ldd', [SHIM]);
    expect(ldd.stdout.toString() + ldd.stderr.toString()).toMatch(/not a dynamic executable|statically linked/);
  });

  it('is up to date after a build, so make rebuilds only when sources change', () => {
    expect(spawnSync('make', ['-q', '-C', join(ROOT, 'native/shim')]).status).toBe(0);
  });

  // What makes it start fast, checked without a clock (timing belongs in bench/): musl, not glibc,
  // whose static start-up costs over a millisecond more per exec here; and no JSON library.
  it('is built with musl and nothing but libc: small, no glibc start-up', () => {
    expect(statSync(SHIM).size).toBeLessThan(200 * 1024);
    const strings = execFileSync('strings', ['-a', SHIM]).toString();
    expect(strings).not.toMatch(/GLIBC|GNU C Library|json-c/i);
  });
});

describe('skeleton', () => {
  it('answers VERSION without stdin and without the agent', async () => {
    const agent = await resultAgent({});
    const run = await runShim({ CNI_COMMAND: 'VERSION' }, JSON.stringify(conf({ socketPath: agent.socketPath })));
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n');
    expect(agent.seen).toHaveLength(0);
  });

  it.each([
    ['no CNI_COMMAND', { CNI_COMMAND: '' }, /CNI_COMMAND/],
    ['an unknown CNI_COMMAND', { CNI_COMMAND: 'UPDATE' }, /'UPDATE'/],
    ['ADD without CNI_NETNS', { CNI_NETNS: '' }, /CNI_NETNS/],
    ['ADD without CNI_CONTAINERID and CNI_PATH', { CNI_CONTAINERID: '', CNI_PATH: '' }, /CNI_CONTAINERID, CNI_PATH/],
    ['ADD without CNI_IFNAME', { CNI_IFNAME: '' }, /CNI_IFNAME/],
    ['a container id with a slash', { CNI_CONTAINERID: 'a/b' }, /CNI_CONTAINERID 'a\/b'/],
    ['an interface name longer than 15 bytes', { CNI_IFNAME: 'eth0123456789abc' }, /CNI_IFNAME 'eth0123456789abc'/],
  ])('fails with code 4 for %s', async (_name, env, msg) => {
    const run = await runShim(podEnv('ADD', env), JSON.stringify(conf({ socketPath: MISSING })));
    const e = cniError(run);
    expect(e.code).toBe(4);
    expect(e.msg).toMatch(msg);
  });

  it.each([
    ['malformed JSON', '{"cniVersion":"1.1.0",', 6, /not a valid JSON object/],
    ['data after the object', '{"cniVersion":"1.1.0","name":"n"} {}', 6, /not a valid JSON object/],
    ['an empty stdin', '', 6, /not a valid JSON object/],
    ['a JSON array', '[1]', 6, /not a valid JSON object/],
    ['an unsupported cniVersion', '{"cniVersion":"0.2.0","name":"n"}', 1, /'0\.2\.0'/],
    ['no cniVersion', '{"name":"n"}', 1, /cniVersion/],
    ['no network name', '{"cniVersion":"1.0.0"}', 7, /name/],
    // The shim's own parser is strict JSON (RFC 8259), as json-c's strict mode was.
    ['a trailing comma', '{"cniVersion":"1.1.0","name":"n",}', 6, /not a valid JSON object/],
    ['a raw control character in a string', '{"cniVersion":"1.1.0","name":"a\tb"}', 6, /control character/],
    ['a bad escape', '{"cniVersion":"1.1.0","name":"a\\qb"}', 6, /bad escape/],
    ['a short \\u escape', '{"cniVersion":"1.1.0","name":"\\u12"}', 6, /bad \\u escape/],
    ['a number with a leading zero', '{"cniVersion":"1.1.0","name":"n","x":01}', 6, /not a valid JSON object/],
    ['NaN', '{"cniVersion":"1.1.0","name":"n","x":NaN}', 6, /unexpected character/],
    ['single quotes', "{'cniVersion':'1.1.0'}", 6, /member name/],
    [
      '65 levels of nesting',
      `{"cniVersion":"1.1.0","name":"n","x":${'['.repeat(64)}${']'.repeat(64)}}`,
      6,
      /nested too deeply/,
    ],
    [
      'invalid UTF-8',
      Buffer.concat([Buffer.from('{"cniVersion":"1.1.0","name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
      6,
      /invalid UTF-8/,
    ],
    [
      'an overlong UTF-8 encoding',
      Buffer.concat([
        Buffer.from('{"cniVersion":"1.1.0","name":"'),
        Buffer.from([0xe0, 0x80, 0xaf]),
        Buffer.from('"}'),
      ]),
      6,
      /invalid UTF-8/,
    ],
    [
      'a UTF-8 surrogate',
      Buffer.concat([
        Buffer.from('{"cniVersion":"1.1.0","name":"'),
        Buffer.from([0xed, 0xa0, 0x80]),
        Buffer.from('"}'),
      ]),
      6,
      /invalid UTF-8/,
    ],
  ])('rejects %s on stdin', async (_name, stdin, code, msg) => {
    const e = cniError(await runShim(podEnv('ADD'), stdin));
    expect(e.code).toBe(code);
    expect(`${e.msg} (${e.details ?? ''})`).toMatch(msg);
  });

  it.each([
    ['CHECK', '0.3.1'],
    ['STATUS', '1.0.0'],
    ['GC', '1.0.0'],
  ])('refuses %s in cniVersion %s with code 1', async (command, version) => {
    const e = cniError(
      await runShim(podEnv(command), JSON.stringify(conf({ cniVersion: version, socketPath: MISSING }))),
    );
    expect(e).toMatchObject({ cniVersion: version, code: 1 });
    expect(e.msg).toContain(command);
  });

  it.each([
    ['socketPath', 'run/cni.sock'],
    ['socketPath', `/${'x'.repeat(120)}`],
    ['timeoutSeconds', 0],
    ['timeoutSeconds', '5'],
    ['excludeNamespaces', 'kube-system'],
    ['excludeNamespaces', ['kube-system', 3]],
  ])('rejects %s %j with code 7 naming the key', async (key, value) => {
    const e = cniError(await runShim(podEnv('ADD'), JSON.stringify(conf({ [key]: value }))));
    expect(e).toMatchObject({ cniVersion: '1.1.0', code: 7 });
    expect(e.msg).toContain(key);
  });

  it('takes a config of exactly 1 MiB and refuses one byte more', async () => {
    const agent = await resultAgent({ cniVersion: '1.1.0' });
    const base = JSON.stringify(conf({ socketPath: agent.socketPath, pad: '' }));
    const exact = base.replace('"pad":""', `"pad":"${'p'.repeat(1024 * 1024 - base.length)}"`);
    expect(Buffer.byteLength(exact)).toBe(1024 * 1024);
    const ok = await runShim(podEnv('ADD'), exact);
    expect(ok.code, ok.stdout).toBe(0);
    expect(agent.seen).toHaveLength(1);
    const e = cniError(await runShim(podEnv('ADD'), exact + ' '));
    expect(e.code).toBe(7);
    expect(e.msg).toMatch(/1 MiB/);
    expect(agent.seen).toHaveLength(1);
  });
});

describe('configuration JSON', () => {
  it('decodes escapes in the keys it reads and forwards the configuration with the same meaning', async () => {
    const agent = await resultAgent({ cniVersion: '1.1.0' });
    const config = {
      cniVersion: '1.1.0',
      name: 'n\u00e9 \u{1F600} "q" \\ \n',
      type: 'meshcni',
      nested: { list: [1, 2.5e3, -7, true, false, null, ''] },
    };
    // socketPath written with escaped slashes, \u escapes and a duplicate key whose last value wins.
    const escapedPath = agent.socketPath.replace(/\//g, '\\/').replace('s', '\\u0073');
    const text = JSON.stringify(config).replace(
      /}$/,
      `,"socketPath":"/nonexistent/x.sock","socketPath":"${escapedPath}"}`,
    );
    const run = await runShim(podEnv('ADD'), text);
    expect(run.code, run.stdout).toBe(0);
    expect(agent.seen).toHaveLength(1);
    const sent = JSON.parse(agent.seen[0]!.body) as { config: Record<string, unknown> };
    expect(sent.config).toEqual({ ...config, socketPath: agent.socketPath });
  });

  it('names an unusable value in its own JSON form', async () => {
    const e = cniError(await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: [' a ', { b: 1 }] }))));
    expect(e.code).toBe(7);
    expect(e.msg).toBe('socketPath [" a ",{"b":1}] must be an absolute path of at most 107 bytes');
  });
});

describe('excluded namespaces', () => {
  it.each(VERSIONS)('ADD echoes prevResult in cniVersion %s without calling the agent', async (version) => {
    const agent = await resultAgent({});
    const stdin = JSON.stringify(
      conf({
        cniVersion: version,
        socketPath: agent.socketPath,
        excludeNamespaces: ['kube-system', 'shop'],
        prevResult: PREV,
      }),
    );
    const run = await runShim(podEnv('ADD'), stdin);
    expect(run.code, run.stdout).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ ...PREV, cniVersion: version });
    expect(agent.seen).toHaveLength(0);
  });

  it('ADD without prevResult prints a bare result', async () => {
    const agent = await resultAgent({});
    const run = await runShim(
      podEnv('ADD'),
      JSON.stringify(conf({ cniVersion: '0.4.0', socketPath: agent.socketPath, excludeNamespaces: ['shop'] })),
    );
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ cniVersion: '0.4.0' });
    expect(agent.seen).toHaveLength(0);
  });

  it('CHECK succeeds silently without calling the agent', async () => {
    const agent = await resultAgent({});
    const run = await runShim(
      podEnv('CHECK'),
      JSON.stringify(conf({ socketPath: agent.socketPath, excludeNamespaces: ['shop'], prevResult: PREV })),
    );
    expect(run).toMatchObject({ code: 0, stdout: '' });
    expect(agent.seen).toHaveLength(0);
  });

  it('still forwards a namespace that is not listed, and DEL of a listed one', async () => {
    const agent = await resultAgent({ cniVersion: '1.1.0' });
    const listed = conf({ socketPath: agent.socketPath, excludeNamespaces: ['kube-system', 'sho', 'shop2'] });
    expect((await runShim(podEnv('ADD'), JSON.stringify(listed))).code).toBe(0);
    const excluded = conf({ socketPath: agent.socketPath, excludeNamespaces: ['shop'] });
    expect((await runShim(podEnv('DEL'), JSON.stringify(excluded))).code).toBe(0);
    expect(agent.seen.map((s) => JSON.parse(s.body).command)).toEqual(['ADD', 'DEL']);
  });
});

describe('forwarding', () => {
  it.each([
    ['ADD', podEnv('ADD')],
    ['CHECK', podEnv('CHECK')],
    ['DEL', podEnv('DEL', { CNI_NETNS: '' })],
    ['STATUS', { CNI_COMMAND: 'STATUS' }],
    ['GC', { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }],
  ])('%s posts the environment and the parsed config to /v1/cni', async (command, env) => {
    const agent = await resultAgent({ cniVersion: '1.1.0' });
    const config = conf({
      socketPath: agent.socketPath,
      prevResult: PREV,
      'cni.dev/valid-attachments': [],
      weird: 'a/b"\\\u00e9',
      n: 1.5,
    });
    const run = await runShim(env, JSON.stringify(config));
    expect(run.code, run.stdout).toBe(0);
    expect(agent.seen).toHaveLength(1);
    const req = agent.seen[0]!;
    expect(req).toMatchObject({ method: 'POST', url: '/v1/cni' });
    expect(req.headers).toMatchObject({ host: 'meshcni', 'content-type': 'application/json', connection: 'close' });
    expect(Number(req.headers['content-length'])).toBe(Buffer.byteLength(req.body));
    const e = env as Record<string, string | undefined>;
    expect(JSON.parse(req.body)).toEqual({
      command,
      containerId: e.CNI_CONTAINERID ?? '',
      netns: e.CNI_NETNS ?? '',
      ifName: e.CNI_IFNAME ?? '',
      args: e.CNI_ARGS ?? '',
      path: e.CNI_PATH ?? '',
      config,
    });
  });

  it.each(VERSIONS)('ADD in cniVersion %s prints the agent result', async (version) => {
    const result = { ...PREV, cniVersion: version };
    const agent = await resultAgent(result);
    const run = await runShim(
      podEnv('ADD'),
      JSON.stringify(conf({ cniVersion: version, socketPath: agent.socketPath, prevResult: PREV })),
    );
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual(result);
  });

  it('prints nothing for an empty 200 answer', async () => {
    const agent = await httpAgent((_req, res) => res.writeHead(200, { 'content-length': 0 }).end());
    const run = await runShim(podEnv('DEL'), JSON.stringify(conf({ socketPath: agent.socketPath })));
    expect(run).toMatchObject({ code: 0, stdout: '' });
  });

  it.each([
    ['plain text', 'all good'],
    ['a JSON array', '[1,2]'],
    ['a JSON string', '"ok"'],
    ['a JSON object with trailing bytes', '{"cniVersion":"1.1.0"} x'],
    ['truncated JSON', '{"cniVersion":"1.1'],
  ])('turns a 2xx answer that is %s into code 999 "agent answered non-JSON"', async (_what, body) => {
    const agent = await httpAgent((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body),
    );
    const e = cniError(await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath }))));
    expect(e).toMatchObject({ code: 999, msg: 'agent answered non-JSON' });
    expect(e.details).toContain(body);
  });

  it('relays the agent CNI error as is, with exit code 1', async () => {
    const err = {
      cniVersion: '1.1.0',
      code: 7,
      msg: "pod shop/cart-7d9: annotation 'traffic.sidecar.istio.io/includeInboundPorts' is not a port list",
      details: 'x',
    };
    const agent = await httpAgent((_req, res) =>
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify(err)),
    );
    expect(cniError(await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath }))))).toEqual(err);
  });

  it('turns a non-2xx answer that is not a CNI error into code 999 naming the status', async () => {
    const agent = await httpAgent((_req, res) => res.writeHead(403, { connection: 'close' }).end('forbidden'));
    const e = cniError(await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath }))));
    expect(e).toMatchObject({ code: 999, msg: 'meshcni agent answered HTTP 403', details: 'forbidden' });
  });

  it('reads a chunked answer', async () => {
    const agent = await httpAgent((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"cniVersion":"1.1.0",');
      setTimeout(() => res.end(`"dns":{"search":["${'s'.repeat(40000)}"]}}`), 20);
    });
    const run = await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath })));
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ cniVersion: '1.1.0', dns: { search: ['s'.repeat(40000)] } });
  });

  it('decodes chunk extensions and trailers, and stops at the last chunk', async () => {
    const answer =
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{"a":\r\nA\r\n"chunked"}\r\n0\r\nX-Trailer: t\r\n\r\n';
    const agent = await rawAgent(afterRequest(answer, false));
    const run = await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath, timeoutSeconds: 3 })));
    expect(run).toMatchObject({ code: 0, stdout: '{"a":"chunked"}\n' });
    expect(run.ms).toBeLessThan(2000);
  });

  it('reads an answer without Content-Length to the end of the stream', async () => {
    const body = '{"cniVersion":"1.0.0","ips":[]}';
    const agent = await rawAgent(afterRequest(`HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n${body}`));
    const run = await runShim(
      podEnv('ADD'),
      JSON.stringify(conf({ cniVersion: '1.0.0', socketPath: agent.socketPath })),
    );
    expect(run).toMatchObject({ code: 0, stdout: `${body}\n` });
  });

  it('stops at Content-Length without waiting for the agent to close', async () => {
    const agent = await rawAgent(afterRequest('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}', false));
    const run = await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath, timeoutSeconds: 3 })));
    expect(run).toMatchObject({ code: 0, stdout: '{}\n' });
    expect(run.ms).toBeLessThan(2000);
  });

  it('relays an error the agent sends before it has read the whole request', async () => {
    const err = { cniVersion: '1.1.0', code: 6, msg: 'request body exceeds 65536 bytes' };
    const text = JSON.stringify(err);
    // Stop reading so the shim is still sending, answer, and close with its bytes unread.
    const agent = await rawAgent((s) =>
      s.once('data', () => {
        s.pause();
        const answer = `HTTP/1.1 413 Payload Too Large\r\nContent-Length: ${text.length}\r\nConnection: close\r\n\r\n${text}`;
        s.end(answer, () => s.destroy());
      }),
    );
    const big = JSON.stringify(conf({ socketPath: agent.socketPath, pad: 'p'.repeat(900_000) }));
    expect(cniError(await runShim(podEnv('ADD'), big))).toEqual(err);
  });

  it('takes any reason phrase, even one with a NUL byte', async () => {
    const agent = await rawAgent(afterRequest('HTTP/1.1 200 O\0K\r\nContent-Length: 2\r\n\r\n{}'));
    expect(await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath })))).toMatchObject({
      code: 0,
      stdout: '{}\n',
    });
  });

  it('never crashes on damaged answers', async () => {
    const good = Buffer.from(
      'HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n4;x\r\n{"a"\r\n4\r\n:[]}\r\n0\r\n\r\n',
    );
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const answers: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const b = Buffer.from(good.subarray(0, good.length - rand(8)));
      for (let k = 0; k < 3; k++) b[rand(b.length)] = rand(256);
      answers.push(b);
    }
    let next = 0;
    const agent = await rawAgent((s) => afterRequest(answers[next++] ?? good)(s));
    for (let i = 0; i < answers.length; i++) {
      const run = await runShim(
        podEnv('ADD'),
        JSON.stringify(conf({ socketPath: agent.socketPath, timeoutSeconds: 0.2 })),
      );
      expect(run.signal, `answer ${JSON.stringify(answers[i]?.toString('latin1'))}`).toBeNull();
      expect([0, 1]).toContain(run.code);
    }
  });

  it.each([
    ['not HTTP', 'SSH-2.0-OpenSSH\r\n\r\n', /not valid HTTP/],
    ['cut short', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cniVersion"', /cut short/],
    ['badly chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n', /not valid HTTP/],
    ['of a negative length', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}', /not valid HTTP/],
    [
      'too large',
      Buffer.concat([
        Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${5 << 20}\r\n\r\n`),
        Buffer.alloc(5 << 20, 0x20),
      ]),
      /larger than/,
    ],
  ])('ADD fails with code 999 for an answer that is %s, DEL still succeeds', async (_name, bytes, why) => {
    const agent = await rawAgent(afterRequest(bytes));
    const config = JSON.stringify(conf({ socketPath: agent.socketPath }));
    const e = cniError(await runShim(podEnv('ADD'), config));
    expect(e.code).toBe(999);
    expect(e.details).toMatch(why);
    expect(await runShim(podEnv('DEL'), config)).toMatchObject({ code: 0, stdout: '' });
  });
});

describe('agent unavailable', () => {
  const cases = [
    ['ADD', 11],
    ['CHECK', 11],
    ['GC', 11],
    ['STATUS', 50],
  ] as const;

  async function notListening(): Promise<string> {
    const path = join(tempDir(), 'cni.sock');
    writeFileSync(path, ''); // connect() to a file that is not a listening socket: ECONNREFUSED
    return path;
  }

  async function closesAtOnce(): Promise<string> {
    return (await rawAgent((s) => s.destroy())).socketPath;
  }

  for (const [where, socketPath] of [
    ['no socket', async () => MISSING],
    ['connection refused', notListening],
    ['closed without answering', closesAtOnce],
  ] as const) {
    it.each(cases)(`${where}: %s fails with code %i`, async (command, code) => {
      const e = cniError(await runShim(podEnv(command), JSON.stringify(conf({ socketPath: await socketPath() }))));
      expect(e).toMatchObject({ cniVersion: '1.1.0', code });
      expect(e.details).toBeTruthy();
    });

    it(`${where}: DEL succeeds and prints nothing`, async () => {
      const run = await runShim(podEnv('DEL'), JSON.stringify(conf({ socketPath: await socketPath() })));
      expect(run).toMatchObject({ code: 0, stdout: '' });
      expect(run.stderr).toMatch(/DEL of c0ffee done without the agent/);
    });
  }

  it.each([...cases, ['DEL', 0] as const])(
    'a silent agent: %s gives up after timeoutSeconds (code %i)',
    async (command, code) => {
      const agent = await rawAgent(() => {});
      const run = await runShim(
        podEnv(command),
        JSON.stringify(conf({ socketPath: agent.socketPath, timeoutSeconds: 0.4 })),
      );
      expect(run.ms).toBeGreaterThanOrEqual(390);
      expect(run.ms).toBeLessThan(1000);
      if (code === 0) expect(run).toMatchObject({ code: 0, stdout: '' });
      else expect(cniError(run)).toMatchObject({ code, details: expect.stringMatching(/timed out/) });
    },
  );

  it('one deadline covers the whole exchange, even for an agent that trickles bytes', async () => {
    const agent = await rawAgent((s) => {
      let i = 0;
      const head = 'HTTP/1.1 200 OK\r\nX-Slow: ';
      const timer = setInterval(() => s.write(head[i++] ?? 'a'), 50);
      s.on('close', () => clearInterval(timer));
    });
    const run = await runShim(
      podEnv('ADD'),
      JSON.stringify(conf({ socketPath: agent.socketPath, timeoutSeconds: 0.5 })),
    );
    expect(cniError(run).code).toBe(11);
    expect(run.ms).toBeLessThan(1100);
  }, 10_000);

  it('waits 5 seconds by default', async () => {
    const agent = await rawAgent(() => {});
    const run = await runShim(podEnv('ADD'), JSON.stringify(conf({ socketPath: agent.socketPath })));
    expect(cniError(run).code).toBe(11);
    expect(run.ms).toBeGreaterThanOrEqual(4900);
    expect(run.ms).toBeLessThan(7000);
  });
});
