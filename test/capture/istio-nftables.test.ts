// Istio 1.30.3's native nftables shape, unit level (no root): what the conformance suite's kernel
// comparison does not spell out — the anonymous port sets' names, the family pins nft adds and
// only those, insert-at-index ordering, and that nftSets does not reshape Istio's rules.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG, type CaptureConfig } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import type { Expr, TableContents } from '../../src/nft/model.js';
import { renderExprs } from '../../src/nft/render-nft.js';

const pod = (annotations: Record<string, string> = {}, env: Record<string, string> = {}): unknown => ({
  metadata: { name: 'web', namespace: 'shop', annotations },
  spec: {
    containers: [
      { name: 'app' },
      {
        name: 'istio-proxy',
        image: 'docker.io/istio/proxyv2:1.30.3',
        env: Object.entries(env).map(([name, value]) => ({ name, value })),
      },
    ],
  },
});
const config = (extra: Partial<CaptureConfig> = {}): CaptureConfig => ({
  ...DEFAULT_CAPTURE_CONFIG,
  layout: 'nft',
  istioVersion: '1.30',
  ...extra,
});

function tables(obj: unknown, c = config()): TableContents[] {
  const plan = planRules(obj, c);
  if (!plan.capture) throw new Error(plan.reason);
  return plan.tables;
}
const table = (ts: TableContents[], name: string): TableContents => ts.find((t) => t.table.name === name)!;
const chainText = (t: TableContents, chain: string): string[] => {
  const sets = new Map(t.sets.map((s) => [s.name, s]));
  return t.rules.filter((r) => r.chain === chain).map((r) => renderExprs(r.exprs, sets));
};
const nfprotos = (exprs: Expr[]): number[] =>
  exprs.flatMap((e, i) => {
    const next = exprs[i + 1];
    return e.type === 'meta' && e.key === 'nfproto' && next?.type === 'cmp' ? [next.data[0]!] : [];
  });

describe("Istio 1.30.3's nftables rules", () => {
  it('skips DNS and HBONE for the proxy uid through one anonymous set per family, named as the kernel names them', () => {
    const nat = table(tables(pod({}, { ISTIO_META_DNS_CAPTURE: 'true', ISTIO_DUAL_STACK: 'true' })), 'istio-proxy-nat');
    expect(nat.sets.map((s) => [s.name, s.flags, s.elements.map((e) => e.key.readUInt16BE(0))])).toEqual([
      ['__set0', 3, [53, 15008]],
      ['__set1', 3, [53, 15008]],
    ]);
    const uidRules = chainText(nat, 'istio-output').filter((l) => l.includes('{ 53, 15008 }'));
    expect(uidRules).toHaveLength(2);
    expect(uidRules[0]).toContain('th dport != { 53, 15008 } meta skuid 1337');
  });

  it('in a single-stack pod writes no IPv6 rule, and pins a family only where an address or tproxy needs it', () => {
    const ts = tables(pod({ 'sidecar.istio.io/interceptionMode': 'TPROXY' }));
    for (const t of ts) {
      for (const r of t.rules) {
        const text = renderExprs(r.exprs, new Map(t.sets.map((s) => [s.name, s])));
        expect(nfprotos(r.exprs)).toEqual(/ip (s|d)addr|tproxy ip /.test(text) ? [2] : []);
      }
    }
    // The output jump has no pin: in an inet table it sees IPv6 too, as Istio's does.
    expect(chainText(table(ts, 'istio-proxy-nat'), 'output')).toEqual(['counter jump istio-output']);
  });

  it('orders inserts as nft does: a later insert at index 0 goes first, one past the end appends', () => {
    const nat = table(
      tables(
        pod({
          'istio.io/reroute-virtual-interfaces': 'eth1,eth2',
          'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8',
          'traffic.sidecar.istio.io/includeInboundPorts': '',
        }),
      ),
      'istio-proxy-nat',
    );
    expect(chainText(nat, 'prerouting')).toEqual([
      'iifname "eth2" ip daddr 10.0.0.0/8 counter jump istio-redirect',
      'iifname "eth1" ip daddr 10.0.0.0/8 counter jump istio-redirect',
      'iifname "eth2" counter return',
      'iifname "eth1" counter return',
    ]);
  });

  it('is the same with nftSets on or off: Istio’s own shape, not the derived layout’s sets', () => {
    const p = pod({ 'traffic.sidecar.istio.io/excludeInboundPorts': '1,2,3,4' });
    expect(tables(p, config({ nftSets: false }))).toEqual(tables(p, config({ nftSets: true })));
    expect(table(tables(p), 'istio-proxy-nat').sets).toEqual([]);
  });

  it('loads only the bytes of a byte-aligned prefix, as nft does; other prefixes are masked', () => {
    const nat = table(
      tables(pod({ 'traffic.sidecar.istio.io/includeOutboundIPRanges': '10.0.0.0/8,10.16.0.0/12' })),
      'istio-proxy-nat',
    );
    const loads = nat.rules
      .filter((r) => r.chain === 'istio-output')
      .flatMap((r) => r.exprs.flatMap((e) => (e.type === 'payload' && e.base === 'network' ? [e.len] : [])));
    // 127.0.0.6/32, 127.0.0.1/32 (×3), 10.0.0.0/8, 10.16.0.0/12.
    expect(loads.slice(-2)).toEqual([1, 4]);
    expect(chainText(nat, 'istio-output').slice(-2)).toEqual([
      'ip daddr 10.0.0.0/8 counter jump istio-redirect',
      'ip daddr 10.16.0.0/12 counter jump istio-redirect',
    ]);
  });
});
