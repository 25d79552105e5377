// The nft layout against nft itself: our netlink bytes applied in one netns, `nft -f` of the same
// ruleset as text in another; the kernel must then list both identically, down to the bytecode. Root.
import { afterEach, describe, expect, it } from 'vitest';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import { applyTables } from '../../src/nft/apply.js';
import { NetnsPool, inNetns, netnsPath, nftBytecode } from '../helpers/netns.js';
import { GOLDEN, podObject } from './golden.js';

const pool = new NetnsPool('nl');
afterEach(() => pool.cleanup());

const captured = GOLDEN.filter((c) => c.v4 !== undefined);

// With the 1.30 rules the layout is Istio 1.30.3's native nftables shape, sets or not.
const RULES_SETS = (['1.17', '1.30'] as const).flatMap((v) => [true, false].map((sets) => [v, sets] as const));
describe.each(RULES_SETS)('nft layout, Istio %s rules (sets %s), vs nft -f of the same text', (istioVersion, sets) => {
  it.each(captured.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const plan = planRules(podObject(c), parseCaptureConfig({ layout: 'nft', nftSets: sets, istioVersion }));
    if (!plan.capture) throw new Error('expected capture');
    expect(plan.settings.istioRules).toBe(istioVersion);
    expect(plan.tables.every((t) => t.table.family === 'inet')).toBe(true);
    expect(plan.tables[0]!.table.name).toBe('istio-proxy-nat');
    const ours = pool.create();
    const theirs = pool.create();
    await applyTables(netnsPath(ours), plan.tables);
    inNetns(theirs, 'nft', ['-f', '-'], plan.text);
    expect(inNetns(ours, 'nft', ['list', 'ruleset'])).toBe(inNetns(theirs, 'nft', ['list', 'ruleset']));
    expect(nftBytecode(ours)).toBe(nftBytecode(theirs));
  });
});

describe('nft layout shape', () => {
  it("uses Istio's table and chain names", () => {
    const plan = planRules(
      podObject({ annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY' } }),
      parseCaptureConfig({ layout: 'nft' }),
    );
    if (!plan.capture) throw new Error('expected capture');
    expect(plan.tables.map((t) => t.table.name)).toEqual(['istio-proxy-nat', 'istio-proxy-mangle']);
    // With TPROXY nothing is left for nat prerouting: inbound capture lives in mangle (istio-inbound in
    // nat only holds the tunnel-port rule, as 1.17.8 writes it).
    expect(plan.tables[0]!.chains.map((c) => c.name)).toEqual([
      'output',
      'istio-inbound',
      'istio-redirect',
      'istio-in-redirect',
      'istio-output',
    ]);
    expect(plan.tables[1]!.chains.map((c) => c.name)).toEqual([
      'prerouting',
      'output',
      'istio-divert',
      'istio-tproxy',
      'istio-inbound',
    ]);
  });

  it('keeps the rule count flat as lists grow when sets are on', () => {
    const count = (n: number, sets: boolean): number => {
      const ports = Array.from({ length: n }, (_, i) => 20000 + i).join(',');
      const cidrs = Array.from({ length: n }, (_, i) => `10.${i}.0.0/16`).join(',');
      const plan = planRules(
        podObject({
          annotations: {
            'traffic.sidecar.istio.io/excludeOutboundPorts': ports,
            'traffic.sidecar.istio.io/excludeOutboundIPRanges': cidrs,
          },
        }),
        parseCaptureConfig({ layout: 'nft', nftSets: sets }),
      );
      return plan.capture ? plan.tables.reduce((a, t) => a + t.rules.length, 0) : -1;
    };
    expect(count(200, true)).toBe(count(2, true));
    expect(count(200, false)).toBe(count(2, false) + 2 * 198);
  });
});
