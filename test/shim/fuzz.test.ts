// The shim under 1,000 seeded runs with mutated CNI_* environments, configurations and agent
// answers: it never dies by a signal, exits 0 or 1, and prints either nothing, the agent's JSON
// object, or a CNI error object. The stand-in agent answers from the same seed.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng, fuzzSeed } from '../reliability/rng.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SHIM = process.env.MESHCNI_SHIM ?? join(ROOT, 'build/Release/meshcni'); // another build: sanitizers.test.ts
const RUNS = Number(process.env.MESHCNI_SHIM_FUZZ_RUNS ?? 1000);

const dir = mkdtempSync(join(tmpdir(), `mcni-shimfz-${process.pid}-`));
const sockets = new Set<Socket>();
let server: Server | undefined;
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  rmSync(dir, { recursive: true, force: true });
});

function run(
  env: Record<string, string>,
  stdin: Buffer,
): Promise<{ code: number | null; signal: string | null; stdout: string }> {
  return new Promise((done, fail) => {
    const child = spawn(SHIM, [], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.resume();
    child.stdin.on('error', () => {});
    child.on('error', fail);
    child.on('close', (code, signal) => done({ code, signal, stdout: Buffer.concat(out).toString() }));
    child.stdin.end(stdin);
  });
}

describe('shim fuzz', () => {
  it(`survives ${RUNS} mutated runs with a well-formed outcome each time`, { timeout: 300_000 }, async () => {
    const seed = fuzzSeed(15_1000);
    const rng = new Rng(seed);
    const socketPath = join(dir, 'cni.sock');
    // The stand-in agent: per connection, one of a set of answers, good and damaged.
    const answers = [
      'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{"cniVersion":"1.0.0"}\n\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nnot json',
      'HTTP/1.1 400 Bad Request\r\nContent-Length: 45\r\n\r\n{"cniVersion":"1.0.0","code":4,"msg":"bad"} ',
      'HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\noops!',
      'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"short":',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n',
      'garbage\r\n\r\n',
      '',
    ];
    let next = 0;
    server = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
      const answer = answers[next++ % answers.length]!;
      let got = '';
      s.on('data', (c: Buffer) => {
        got += c.toString();
        if (got.includes('\r\n\r\n') && !s.writableEnded) s.end(answer);
      });
    });
    await new Promise<void>((r) => server!.listen(socketPath, () => r()));
    next = rng.int(answers.length);

    const commands = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION', 'BOGUS', ''];
    const conf = (): Buffer => {
      const r = rng.int(10);
      if (r === 0) return rng.bytes(rng.int(300));
      const c: Record<string, unknown> = {
        cniVersion: rng.pick(['1.0.0', '1.1.0', '0.3.1', '0.4.0', '2.0.0', '', 7]),
        name: rng.chance(0.9) ? 'k8s' : rng.str(rng.int(10)),
        type: 'meshcni',
        // A missing socket is waited for until the deadline (the agent may be restarting): rare.
        socketPath: rng.chance(0.97) ? socketPath : rng.pick(['/nonexistent/x.sock', '', rng.str(200)]),
        ...(rng.chance(0.3)
          ? { prevResult: rng.chance(0.7) ? { cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/24' }] } : rng.str(5) }
          : {}),
        timeoutSeconds: rng.chance(0.9) ? 1 : rng.pick([0, -1, 'x', 1e9]),
        ...(rng.chance(0.1) ? { excludeNamespaces: rng.pick([['shop'], 'x', [1]]) } : {}),
      };
      const text = JSON.stringify(c);
      return Buffer.from(r === 1 ? text.slice(0, rng.int(text.length)) : text);
    };
    const failures: string[] = [];
    for (let i = 0; i < RUNS; i += 8) {
      const batch = Array.from({ length: Math.min(8, RUNS - i) }, () => {
        const env: Record<string, string> = {};
        if (rng.chance(0.95)) env.CNI_COMMAND = rng.pick(commands);
        if (rng.chance(0.9))
          env.CNI_CONTAINERID = rng.chance(0.8)
            ? rng.str(1 + rng.int(64), 'abcdef0123456789')
            : rng.str(rng.int(400)).replace(/\u0000/g, '');
        if (rng.chance(0.9))
          env.CNI_NETNS = rng.pick(['/var/run/netns/x', '', 'rel', rng.str(rng.int(50)).replace(/\u0000/g, '')]);
        if (rng.chance(0.9))
          env.CNI_IFNAME = rng.pick(['eth0', '', 'x'.repeat(20), rng.str(rng.int(10)).replace(/\u0000/g, '')]);
        if (rng.chance(0.9))
          env.CNI_ARGS = rng.chance(0.7)
            ? 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web'
            : rng.str(rng.int(100)).replace(/\u0000/g, '');
        if (rng.chance(0.9)) env.CNI_PATH = '/opt/cni/bin';
        return { env, stdin: conf() };
      });
      const results = await Promise.all(batch.map((b) => run(b.env, b.stdin)));
      results.forEach((r, k) => {
        const where = `run #${i + k} env ${JSON.stringify(batch[k]!.env).slice(0, 200)}`;
        if (r.signal !== null || (r.code !== 0 && r.code !== 1))
          return void failures.push(`${where}: exit ${r.code} signal ${r.signal}`);
        const text = r.stdout.trim();
        if (text === '') return void (r.code !== 0 && failures.push(`${where}: exit 1 with no error printed`));
        let obj: unknown;
        try {
          obj = JSON.parse(text);
        } catch {
          return void failures.push(`${where}: printed non-JSON ${text.slice(0, 100)}`);
        }
        if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
          return void failures.push(`${where}: printed a non-object`);
        const o = obj as Record<string, unknown>;
        if (r.code === 1 && (typeof o.code !== 'number' || typeof o.msg !== 'string'))
          failures.push(`${where}: exit 1 without a CNI error: ${text.slice(0, 100)}`);
      });
    }
    expect(
      failures.slice(0, 10),
      `seed ${seed} (replay with MESHCNI_FUZZ_SEED=${seed}); ${failures.length} failure(s)`,
    ).toEqual([]);
  });
});
