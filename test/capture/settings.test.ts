// Pod settings at the edge: every value Istio 1.17.8's redirect.go rejects (and the ones meshcni
// rejects besides) fails with the annotation and the value; list sizes are bounded; the proxy's
// uid/gid must be ids the kernel accepts.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG, parseCaptureConfig } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import { MAX_LIST_ENTRIES } from '../../src/capture/settings.js';
import { podObject } from './golden.js';

const A = 'traffic.sidecar.istio.io/';
const plan = (
  annotations: Record<string, string>,
  proxy: Record<string, unknown> = {},
  layout: 'iptables' | 'nft' = 'iptables',
) =>
  planRules(
    podObject({ annotations, containers: [{ name: 'app' }, { name: 'istio-proxy', ...proxy }] }),
    layout === 'nft' ? parseCaptureConfig({ layout: 'nft', dualStack: true }) : DEFAULT_CAPTURE_CONFIG,
  );
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('invalid annotation values name the annotation and the value', () => {
  it.each([
    // Port lists (validatePortList): not a number, out of range, an empty entry, "*" where no wildcard means anything.
    [`${A}excludeInboundPorts`, '22,abc', 'abc'],
    [`${A}includeInboundPorts`, '80,65536', '65536'],
    [`${A}includeInboundPorts`, ' *', '*'],
    [`${A}includeInboundPorts`, '80,,90', '80,,90'],
    [`${A}excludeOutboundPorts`, '9090,', '9090,'],
    [`${A}excludeOutboundPorts`, '*', '*'],
    [`${A}includeOutboundPorts`, '-1', '-1'],
    [`${A}excludeInboundPorts`, '*', '*'],
    // CIDR lists (validateCIDRList / netip.ParsePrefix).
    [`${A}includeOutboundIPRanges`, '10.0.0.0/33', '10.0.0.0/33'],
    [`${A}includeOutboundIPRanges`, '10.1.2.3', '10.1.2.3'],
    [`${A}includeOutboundIPRanges`, '*,10.0.0.0/8', '*'],
    [`${A}includeOutboundIPRanges`, '10.0.0.0/8, 10.1.0.0/16', ' 10.1.0.0/16'],
    [`${A}excludeOutboundIPRanges`, '*', '*'],
    [`${A}excludeOutboundIPRanges`, '10.0.0.0/8,', '10.0.0.0/8,'],
    [`${A}excludeOutboundIPRanges`, 'fd00::/129', 'fd00::/129'],
    // The mode (validateInterceptionMode): exact, case-sensitive.
    ['sidecar.istio.io/interceptionMode', 'tproxy', 'tproxy'],
    ['sidecar.istio.io/interceptionMode', 'NONE', 'NONE'],
    // Interfaces: iptables would refuse these names at apply time.
    [`${A}excludeInterfaces`, 'eth0/1', 'eth0/1'],
    [`${A}kubevirtInterfaces`, 'a-name-longer-than-15', 'a-name-longer-than-15'],
    ['istio.io/reroute-virtual-interfaces', 'net1,,net2', 'net1,,net2'],
  ])('%s=%j', (annotation, value, bad) => {
    expect(() => plan({ [annotation]: value })).toThrow(
      new RegExp(`^${esc(annotation)}=${esc(JSON.stringify(bad))}: `),
    );
  });

  it('accepts what Istio accepts: blanks around ports, port 0, host bits in a CIDR, an empty list', () => {
    const p = plan({
      [`${A}includeInboundPorts`]: ' 80 , 0',
      [`${A}excludeOutboundIPRanges`]: '10.96.0.1/12',
      [`${A}includeOutboundIPRanges`]: '',
    });
    if (!p.capture) throw new Error('expected capture');
    expect(p.settings.includeInboundPorts).toEqual({ all: false, ports: [80, 0] });
    expect(p.settings.excludeOutboundCidrs).toEqual(['10.96.0.0/12']);
    expect(p.settings.includeOutboundCidrs).toEqual({ all: false, cidrs: [] });
  });

  it('keeps repeated entries, one rule each, as Istio writes them', () => {
    const p = plan({ [`${A}includeOutboundPorts`]: '3306,3306' });
    if (!p.capture) throw new Error('expected capture');
    expect(p.text.match(/--dport 3306 -j ISTIO_REDIRECT/g)).toHaveLength(2);
  });
});

describe(`list-valued annotations hold at most ${MAX_LIST_ENTRIES} entries`, () => {
  const ports = (n: number): string => Array.from({ length: n }, (_, i) => String(1 + (i % 65535))).join(',');
  const v4s = (n: number): string =>
    Array.from({ length: n }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`).join(',');
  const ifs = (n: number): string => Array.from({ length: n }, (_, i) => `v${i}`).join(',');

  it('exports the limit', () => expect(MAX_LIST_ENTRIES).toBe(16384));

  it.each([
    [`${A}excludeInboundPorts`, ports],
    [`${A}includeInboundPorts`, ports],
    [`${A}excludeOutboundPorts`, ports],
    [`${A}includeOutboundPorts`, ports],
    [`${A}excludeOutboundIPRanges`, v4s],
    [`${A}includeOutboundIPRanges`, v4s],
    [`${A}excludeInterfaces`, ifs],
    [`${A}kubevirtInterfaces`, ifs],
    ['istio.io/reroute-virtual-interfaces', ifs],
  ])('%s: the limit passes, one more fails naming the annotation, the count and the limit', (annotation, list) => {
    expect(() => plan({ [annotation]: list(MAX_LIST_ENTRIES) })).not.toThrow();
    expect(() => plan({ [annotation]: list(MAX_LIST_ENTRIES + 1) })).toThrow(
      new RegExp(`^${esc(annotation)}="\\(16385 entries\\)": a list holds at most 16384 entries, this one has 16385$`),
    );
  });

  it('bounds reroute interfaces × include CIDRs, one rule per pair', () => {
    expect(() =>
      plan({ 'istio.io/reroute-virtual-interfaces': ifs(128), [`${A}includeOutboundIPRanges`]: v4s(129) }),
    ).toThrow(
      /^istio\.io\/reroute-virtual-interfaces × traffic\.sidecar\.istio\.io\/includeOutboundIPRanges="\(16512 pairs\)": at most 16384/,
    );
    expect(() =>
      plan({ 'istio.io/reroute-virtual-interfaces': ifs(128), [`${A}includeOutboundIPRanges`]: v4s(128) }),
    ).not.toThrow();
  });

  it.each(['iptables', 'nft'] as const)(
    'plans a dual-stack pod with four 10,000-entry lists (%s layout), every entry a rule or set element',
    (layout) => {
      const v6s = Array.from({ length: 10_000 }, (_, i) => `fd00:${i.toString(16)}::/32`).join(',');
      const p = plan(
        {
          [`${A}excludeOutboundPorts`]: ports(10_000),
          [`${A}includeOutboundPorts`]: ports(10_000),
          [`${A}excludeOutboundIPRanges`]: v4s(10_000),
          [`${A}includeOutboundIPRanges`]: v6s,
        },
        { env: { ISTIO_DUAL_STACK: 'true' } },
        layout,
      );
      if (!p.capture) throw new Error('expected capture');
      const v4 = p.iptables.v4.tables
        .find((t) => t.name === 'nat')!
        .rules.filter((r) => r.chain === 'ISTIO_OUTPUT').length;
      const v6 = p.iptables
        .v6!.tables.find((t) => t.name === 'nat')!
        .rules.filter((r) => r.chain === 'ISTIO_OUTPUT').length;
      // 12 fixed rules (passthrough, owners, localhost) + ports both ways + the family's CIDRs (+ RETURN after v6 includes).
      expect(v4).toBe(10_000 + 1 + 6 + 1 + 10_000 + 10_000);
      expect(v6).toBe(10_000 + 1 + 6 + 1 + 10_000 + 10_000 + 1);
      if (layout === 'nft') {
        const elements = p.tables.flatMap((t) => t.sets).reduce((n, s) => n + s.elements.length, 0);
        expect(elements).toBeGreaterThanOrEqual(10_000 * 3);
      }
    },
  );
});

describe("the istio-proxy container's runAsUser / runAsGroup", () => {
  it.each([
    ['runAsUser', 4294967295],
    ['runAsUser', -1],
    ['runAsUser', 1.5],
    ['runAsUser', '1337'],
    ['runAsGroup', 4294967296],
    ['runAsGroup', 2 ** 53],
  ])('%s %j fails naming the container field and the value', (field, value) => {
    expect(() => plan({}, { [field]: value })).toThrow(
      new RegExp(
        `^spec\\.containers\\[istio-proxy\\]\\.securityContext\\.${field}=${esc(JSON.stringify(value))}: must be an integer id from 0 to 4294967294$`,
      ),
    );
  });

  it('accepts 4294967294, the largest id, and writes it into the owner rules', () => {
    const p = plan({}, { runAsUser: 4294967294, runAsGroup: 4294967294 });
    if (!p.capture) throw new Error('expected capture');
    expect(p.text).toContain('-m owner --uid-owner 4294967294 -j RETURN');
    expect(p.text).toContain('-m owner --gid-owner 4294967294 -j RETURN');
  });

  it("ignores other containers' ids: they never become rules", () => {
    expect(() =>
      planRules(
        podObject({ containers: [{ name: 'app', runAsUser: 4294967295 }, { name: 'istio-proxy' }] }),
        DEFAULT_CAPTURE_CONFIG,
      ),
    ).not.toThrow();
  });
});
