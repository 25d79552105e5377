// CHECK and reconcile compare a plan with what the kernel dumps back. For every layout and mode the
// agent supports, a freshly applied pod must compare equal (no false drift), and a rule removed by
// hand with `nft` must show up as a difference. Real netns, root.
import { afterAll, describe, expect, it } from 'vitest';
import { applyPlan } from '../../src/agent/agent.js';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import { readTables } from '../../src/nft/apply.js';
import { diffTables } from '../../src/nft/ruleset.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';

const pool = new NetnsPool('rchk');
afterAll(() => pool.cleanup());

function pod(annotations: Record<string, string>, env: Record<string, string>): Record<string, unknown> {
  return {
    metadata: { namespace: 'shop', name: 'web', annotations },
    spec: {
      containers: [
        { name: 'app' },
        {
          name: 'istio-proxy',
          securityContext: { runAsUser: 1337, runAsGroup: 1337 },
          env: Object.entries(env).map(([name, value]) => ({ name, value })),
        },
      ],
    },
  };
}

const MODES: { mode: string; annotations: Record<string, string>; env: Record<string, string> }[] = [
  { mode: 'REDIRECT', annotations: {}, env: {} },
  { mode: 'TPROXY', annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY' }, env: {} },
  { mode: 'REDIRECT + DNS capture', annotations: {}, env: { ISTIO_META_DNS_CAPTURE: 'true' } },
  { mode: 'REDIRECT dual stack', annotations: {}, env: { ISTIO_DUAL_STACK: 'true' } },
  {
    mode: 'TPROXY + DNS capture, dual stack',
    annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY' },
    env: { ISTIO_META_DNS_CAPTURE: 'true', ISTIO_DUAL_STACK: 'true' },
  },
  {
    mode: 'REDIRECT with port lists',
    annotations: {
      'traffic.sidecar.istio.io/excludeInboundPorts': '22,8081',
      'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32,10.0.0.0/8',
    },
    env: {},
  },
];
const CASES = [
  ...MODES.map((m) => ({ layout: 'iptables' as const, nftSets: true, ...m })),
  ...MODES.map((m) => ({ layout: 'nft' as const, nftSets: true, ...m })),
  ...MODES.map((m) => ({ layout: 'nft' as const, nftSets: false, ...m })),
];

describe('CHECK against the kernel: no false drift', () => {
  it.each(CASES)(
    '$layout layout (sets $nftSets), $mode: applied rules compare equal; a deleted rule is drift',
    async (c) => {
      const plan = planRules(pod(c.annotations, c.env), parseCaptureConfig({ layout: c.layout, nftSets: c.nftSets }));
      if (!plan.capture) throw new Error(`not captured: ${plan.reason}`);
      const ns = pool.create();
      const path = netnsPath(ns);
      await applyPlan(path, { ...plan, summary: {} });
      expect(diffTables(plan.tables, await readTables(path))).toEqual([]);

      // The kernel, through nft itself, decides what to remove: the last rule of the first table.
      const listing = JSON.parse(inNetns(ns, 'nft', ['-j', '-a', 'list', 'ruleset'])) as {
        nftables: Record<string, { family: string; table: string; chain: string; handle: number }>[];
      };
      const rules = listing.nftables.filter((o) => o.rule).map((o) => o.rule!);
      expect(rules.length).toBe(plan.tables.reduce((n, t) => n + t.rules.length, 0));
      const victim = rules[rules.length - 1]!;
      inNetns(ns, 'nft', [
        'delete',
        'rule',
        victim.family,
        victim.table,
        victim.chain,
        'handle',
        String(victim.handle),
      ]);
      expect(diffTables(plan.tables, await readTables(path)).length).toBeGreaterThan(0);
    },
  );
});

describe('10,000-entry annotation lists', () => {
  const ports = Array.from({ length: 10_000 }, (_, k) => String(1 + k)).join(',');
  const cidrs = Array.from({ length: 10_000 }, (_, k) => `10.${(k >> 8) & 255}.${k & 255}.1/32`).join(',');
  const annotations = {
    'traffic.sidecar.istio.io/excludeInboundPorts': ports,
    'traffic.sidecar.istio.io/excludeOutboundPorts': ports,
    'traffic.sidecar.istio.io/excludeOutboundIPRanges': cidrs,
  };

  it.each([{ layout: 'nft' as const }, { layout: 'iptables' as const }])(
    '$layout layout: apply in one transaction (sets split across messages) and read back equal',
    async ({ layout }) => {
      const plan = planRules(pod(annotations, {}), parseCaptureConfig({ layout }));
      if (!plan.capture) throw new Error(`not captured: ${plan.reason}`);
      const ns = pool.create();
      await applyPlan(netnsPath(ns), { ...plan, summary: {} });
      expect(diffTables(plan.tables, await readTables(netnsPath(ns)))).toEqual([]);
      if (layout === 'nft') {
        // The kernel's own view: each list (plus Istio's own fixed entries) made it into its set.
        const sets = (
          JSON.parse(inNetns(ns, 'nft', ['-j', 'list', 'sets'])) as {
            nftables: { set?: { name: string; elem?: unknown[] } }[];
          }
        ).nftables.flatMap((o) => (o.set ? [o.set] : []));
        const sizes = sets.map((s) => s.elem?.length ?? 0).sort((a, b) => b - a);
        for (const n of sizes.slice(0, 3)) expect(n).toBeGreaterThanOrEqual(10_000);
      }
    },
  );
});
