// The pod-add path end to end: real netns, real upstream CNI plug-ins in front of the built shim,
// the built agent as a separate process. Root.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetnsPool, inNetns } from '../helpers/netns.js';
import { World, nftRuleset, pluginFailure, saveIn } from './helpers.js';

const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
/** The seed's documented pod: the fixture is what istio-iptables makes of these annotations. */
const DOCUMENTED = {
  'traffic.sidecar.istio.io/excludeInboundPorts': '22',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
};

const worlds: World[] = [];
const pool = new NetnsPool('e2e');
function world(extra: Record<string, unknown> = {}): World {
  const w = new World(extra);
  worlds.push(w);
  return w;
}
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
  pool.cleanup();
});

/** What iptables-nft-restore of the documented fixture reads back as: the oracle. */
function oracleSave(): string {
  const ns = pool.create();
  inNetns(ns, 'iptables-nft-restore', [], fixture);
  return saveIn(ns);
}

describe('CNI ADD through bridge + loopback + meshcni', () => {
  it('captures a pod exactly as istio-iptables would, passes CHECK, and DEL forgets it', async () => {
    const w = world();
    w.addPod({ namespace: 'shop', name: 'web', annotations: DOCUMENTED });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    const result = await s.add();
    expect(result.cniVersion).toBe('1.0.0');
    expect(s.address()).toMatch(/^10\.249\./); // the bridge plug-in's result came through meshcni untouched
    expect(saveIn(s.netnsName)).toBe(oracleSave());
    const listing = inNetns(s.netnsName, 'iptables', ['-t', 'nat', '-L', '-n', '-v']);
    for (const c of ['ISTIO_INBOUND', 'ISTIO_REDIRECT', 'ISTIO_IN_REDIRECT', 'ISTIO_OUTPUT'])
      expect(listing).toContain(`Chain ${c}`);
    await s.check();
    const stateFile = join(w.stateDir, 'pods', `${s.containerId}.json`);
    expect(existsSync(stateFile)).toBe(true);
    // CHECK notices rules that went missing.
    inNetns(s.netnsName, 'nft', ['flush', 'ruleset']);
    const e = await pluginFailure(s.check());
    expect(e.message).toMatch(/rule difference/);
    await s.destroy();
    expect(existsSync(stateFile)).toBe(false);
    const metrics = await w.admin('/metrics');
    expect(metrics.body).toMatch(/meshcni_cni_requests_total\{command="ADD",result="ok"\} 1/);
  });

  it('is idempotent: a repeated ADD leaves exactly one copy of the rules', async () => {
    const w = world();
    w.addPod({ namespace: 'shop', name: 'web', annotations: DOCUMENTED });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    await s.add();
    const once = saveIn(s.netnsName);
    await s.add().catch(() => undefined); // the bridge plug-in may object to a second ADD; meshcni must not
    const r = spawnSync('ip', ['netns', 'exec', s.netnsName, 'iptables-nft-save', '-t', 'nat'], { encoding: 'utf8' });
    expect(r.stdout.split('\n').filter((l) => l.startsWith('-A')).length).toBe(
      once.split('\n').filter((l) => l.startsWith('-A')).length,
    );
  });

  it('leaves a pod without an istio-proxy container untouched', async () => {
    const w = world();
    w.addPod({ namespace: 'shop', name: 'plain', containers: ['app', 'logger'] });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'shop', name: 'plain' });
    await s.add();
    expect(nftRuleset(s.netnsName)).toBe('');
    await w.waitForLog(/"decision":"skip"/);
  });

  it("echoes prevResult for a namespace in the shim's excludeNamespaces without asking the agent", async () => {
    const w = world();
    // No agent at all: the shim must not need it for an excluded namespace.
    const s = w.sandbox({ namespace: 'kube-system', name: 'coredns' });
    const result = await s.add();
    expect(s.address()).toMatch(/^10\.249\./);
    expect(result.cniVersion).toBe('1.0.0');
    expect(nftRuleset(s.netnsName)).toBe('');
  });

  it("skips a namespace the agent's config excludes, echoing prevResult", async () => {
    const w = world({ excludeNamespaces: ['batch'] });
    w.addPod({ namespace: 'batch', name: 'job', annotations: DOCUMENTED });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'batch', name: 'job' }, w.entry({ excludeNamespaces: [] }));
    await s.add();
    expect(s.address()).toMatch(/^10\.249\./);
    expect(nftRuleset(s.netnsName)).toBe('');
  });
});

describe('when the agent is down', () => {
  it('fails ADD with CNI code 11 (try again later) and lets DEL succeed', async () => {
    const w = world();
    w.addPod({ namespace: 'shop', name: 'web' });
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    const e = await pluginFailure(s.add());
    expect(e.cniError?.code).toBe(11);
    expect(nftRuleset(s.netnsName)).not.toMatch(/ISTIO/);
    await s.destroy(); // must not throw: teardown never wedges
    expect(existsSync(s.netnsPath)).toBe(false);
  });
});

describe('under load and failure', () => {
  it('handles 100 concurrent ADDs, each namespace fully captured', async () => {
    const w = world();
    for (let i = 0; i < 100; i++) w.addPod({ namespace: 'load', name: `p${i}`, annotations: DOCUMENTED });
    await w.startAgent();
    const boxes = Array.from({ length: 100 }, (_, i) => w.sandbox({ namespace: 'load', name: `p${i}` }));
    await Promise.all(boxes.map((b) => b.add()));
    const want = oracleSave();
    for (const b of boxes) expect(saveIn(b.netnsName)).toBe(want);
    expect(readdirSync(join(w.stateDir, 'pods')).length).toBe(100);
  }, 180_000);

  it('leaves no namespace half-programmed when the agent is killed with requests in flight', async () => {
    const w = world();
    for (let i = 0; i < 40; i++) w.addPod({ namespace: 'kill', name: `p${i}`, annotations: DOCUMENTED });
    await w.startAgent();
    const boxes = Array.from({ length: 40 }, (_, i) => w.sandbox({ namespace: 'kill', name: `p${i}` }));
    const adds = boxes.map((b) =>
      b.add().then(
        () => 'ok',
        () => 'failed',
      ),
    );
    await new Promise((r) => setTimeout(r, 150));
    await w.stopAgent('SIGKILL');
    const outcomes = await Promise.all(adds);
    const want = oracleSave();
    const empty = saveIn(pool.create());
    for (const [i, b] of boxes.entries()) {
      const got = saveIn(b.netnsName);
      // All or nothing per namespace; and a pod whose ADD succeeded is certainly captured.
      expect([want, empty]).toContain(got);
      if (outcomes[i] === 'ok') expect(got).toBe(want);
    }
  }, 120_000);

  it('answers malformed and oversized requests with a clear error and keeps serving', async () => {
    const w = world({ maxBodyBytes: 4096 });
    w.addPod({ namespace: 'shop', name: 'web', annotations: DOCUMENTED });
    await w.startAgent();
    const post = (body: string, type = 'application/json'): Promise<{ status: number; body: string }> =>
      new Promise((resolveRes, reject) => {
        const req = request(
          { socketPath: w.socketPath, path: '/v1/cni', method: 'POST', headers: { 'content-type': type } },
          (res) => {
            let b = '';
            res.on('data', (c: Buffer) => (b += c.toString()));
            res.on('end', () => resolveRes({ status: res.statusCode ?? 0, body: b }));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const bad = await post('{"command": "ADD",');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).msg).toMatch(/not valid JSON/);
    const unknown = await post(JSON.stringify({ command: 'ADD', bogus: 1 }));
    expect(JSON.parse(unknown.body).msg).toMatch(/unknown request field 'bogus'/);
    const big = await post(JSON.stringify({ pad: 'x'.repeat(10_000) }));
    expect(big.status).toBe(413);
    // Still serving: a real ADD through the chain works.
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    await s.add();
    expect(saveIn(s.netnsName)).toBe(oracleSave());
    expect((await w.admin('/readyz')).status).toBe(200);
  });
});
