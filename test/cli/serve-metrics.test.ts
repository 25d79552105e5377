// `meshcni-agent serve --install` as a real process, observed the way Prometheus and the kubelet do:
// /metrics on the loopback admin address and on the metrics-only scrape address, with process
// defaults, build info, and an install-ready gauge that follows the chain entry on disk.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/agent/metrics.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

let dir = '';
let agent: ChildProcess | undefined;
afterEach(async () => {
  if (agent && agent.exitCode === null && agent.signalCode === null) {
    const exited = new Promise((r) => agent!.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
  }
  agent = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

function get(port: number, path: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolvePromise({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `probe` until it returns a value (the log line, a scrape that shows the change); throws `why()` after `ms`. */
async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  ms: number,
  why: () => string,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(why());
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The value of one sample line (`name{labels} value`) in a Prometheus text exposition. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('meshcni-agent serve metrics', () => {
  it('serves process defaults, build info and install readiness on the admin address, and only /metrics on the scrape address', async () => {
    dir = mkdtempSync(join(tmpdir(), `mcni-serve-${process.pid}-`));
    const conf = join(dir, 'net.d');
    const bin = join(dir, 'bin');
    for (const d of [conf, bin, join(dir, 'pods'), join(dir, 'state')]) mkdirSync(d);
    const primary = join(conf, '10-bridge.conflist');
    const good = JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0' }] });
    writeFileSync(primary, good);
    let log = '';
    agent = spawn(
      process.execPath,
      [
        MAIN,
        'serve',
        '--install',
        '--pods-dir',
        join(dir, 'pods'),
        '--state-dir',
        join(dir, 'state'),
        '--socket',
        join(dir, 'cni.sock'),
        '--cni-conf-dir',
        conf,
        '--cni-bin-dir',
        bin,
        '--metrics-address',
        '127.0.0.1:0',
        '--metrics-scrape-address',
        '127.0.0.1:0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NAME: 'node-a' } },
    );
    agent.stdout!.on('data', (c: Buffer) => (log += c.toString()));
    agent.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    const ready = await waitFor(
      () => log.split('\n').find((l) => l.includes('meshcni agent ready')),
      30_000,
      () => `agent not ready:\n${log}`,
    );
    const { adminPort, scrapePort } = JSON.parse(ready) as { adminPort: number; scrapePort: number };
    expect(scrapePort).toBeGreaterThan(0);
    expect(scrapePort).not.toBe(adminPort);

    const m = await get(adminPort, '/metrics');
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(m.body).toContain(
      `meshcni_build_info{version="${VERSION}",node="node-a",nodejs="${process.versions.node}",arch="${process.arch}"} 1`,
    );
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
    ]) {
      expect(sample(m.body, name), name).toBeGreaterThanOrEqual(0);
    }
    expect(sample(m.body, 'meshcni_install_ready')).toBe(1);

    // Only /metrics on the scrape address; health stays on the admin address.
    const s = await get(scrapePort, '/metrics');
    expect(s.status).toBe(200);
    expect(sample(s.body, 'meshcni_install_ready')).toBe(1);
    expect((await get(scrapePort, '/healthz')).status).toBe(404);
    expect((await get(scrapePort, '/readyz')).status).toBe(404);
    expect((await get(adminPort, '/readyz')).status).toBe(200);

    // The primary CNI writes a config meshcni cannot chain into: not ready; fixed again: ready.
    writeFileSync(primary, '{ not json');
    await waitFor(
      async () => sample((await get(scrapePort, '/metrics')).body, 'meshcni_install_ready') === 0 || undefined,
      30_000,
      () => `install_ready never 0:\n${log}`,
    );
    writeFileSync(primary, good);
    await waitFor(
      async () => sample((await get(scrapePort, '/metrics')).body, 'meshcni_install_ready') === 1 || undefined,
      30_000,
      () => `install_ready never back to 1:\n${log}`,
    );
    expect(JSON.parse(readFileSync(primary, 'utf8')).plugins.map((p: { type: string }) => p.type)).toEqual([
      'bridge',
      'meshcni',
    ]);
  });
});

describe('agent latency histograms', () => {
  it("have buckets up to the shim's 5 s deadline, so a slow ADD is not only +Inf", async () => {
    const m = createMetrics('node-b');
    m.addSeconds.observe({ result: 'ok' }, 4);
    m.applySeconds.observe({ layout: 'nft' }, 4);
    const text = await m.registry.metrics();
    for (const h of ['meshcni_cni_add_duration_seconds', 'meshcni_apply_duration_seconds']) {
      const le = (b: string): number | undefined =>
        sample(
          text
            .split('\n')
            .filter((l) => l.includes(`le="${b}"`))
            .join('\n'),
          `${h}_bucket`,
        );
      expect(le('2.5'), h).toBe(0);
      expect(le('5'), h).toBe(1);
    }
  });
});
