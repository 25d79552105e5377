// Istio 1.30.3 conformance cases: for every golden file of Istio 1.30.3 (the CNI plug-in's and
// istio-iptables' capture goldens) whose inputs are pod annotations, istio-proxy env or the proxy's
// uid/gid, the pod and the rules Istio writes for it, as iptables-restore input in the order 1.30.3's
// run.go writes them. Inputs transcribed from cni/pkg/plugin/plugin_dryrun_test.go and
// tools/istio-iptables/pkg/capture/run_test.go (the same inputs as 1.17.8's); rules written for
// meshcni from run.go's semantics and checked against the named golden; no Istio file is copied here.
import { CASES, SKIPPED, TPROXY_CHAINS, type ConformanceCase, type SkippedGolden } from './cases.js';

export const ISTIO_1_30_COMMIT = '56df41f63e513f834c9a3af33d8aed82d1d961f2';

const CNI = 'cni/pkg/plugin/testdata/';
const TOOLS = 'tools/istio-iptables/pkg/capture/testdata/';
const MODE = 'sidecar.istio.io/interceptionMode';
/** plugin_dryrun_test.go's custom uid and gid (an OpenShift-style range). */
const CUSTOM = { runAsUser: 1000670000, runAsGroup: 1000670001 };

const text = (...blocks: string[][]): string => blocks.map((b) => `${b.join('\n')}\nCOMMIT\n`).join('');

/** The nat chains and the three rules run.go always writes first. */
const NAT_HEAD = ['*nat', '-N ISTIO_INBOUND', '-N ISTIO_REDIRECT', '-N ISTIO_IN_REDIRECT', '-N ISTIO_OUTPUT'];
const NAT_FIXED = [
  '-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN',
  '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
  '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
];
const INBOUND_ALL = [
  '-A PREROUTING -p tcp -j ISTIO_INBOUND',
  ...[15020, 15021, 15090].map((p) => `-A ISTIO_INBOUND -p tcp --dport ${p} -j RETURN`),
  '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT',
];
/** 1.30: every protocol enters ISTIO_OUTPUT; an excluded port is excluded for TCP and UDP. */
const OUTPUT_HEAD = (excluded: number[] = [15020]): string[] => [
  '-A OUTPUT -j ISTIO_OUTPUT',
  ...excluded.flatMap((p) => [
    `-A ISTIO_OUTPUT -p tcp --dport ${p} -j RETURN`,
    `-A ISTIO_OUTPUT -p udp --dport ${p} -j RETURN`,
  ]),
  '-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
];
/** The uid block then the gid block; the owner → inbound rules skip the HBONE port 15008. */
const OWNERS = (uid = 1337, gid = 1337, loopbackReturn = true, lo = '127.0.0.1/32'): string[] =>
  (
    [
      ['uid', uid],
      ['gid', gid],
    ] as const
  ).flatMap(([k, id]) => [
    `-A ISTIO_OUTPUT -o lo ! -d ${lo} -p tcp ! --dport 15008 -m owner --${k}-owner ${id} -j ISTIO_IN_REDIRECT`,
    ...(loopbackReturn ? [`-A ISTIO_OUTPUT -o lo -m owner ! --${k}-owner ${id} -j RETURN`] : []),
    `-A ISTIO_OUTPUT -m owner --${k}-owner ${id} -j RETURN`,
  ]);
const OUTPUT_TAIL = ['-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN', '-A ISTIO_OUTPUT -j ISTIO_REDIRECT'];

const DEFAULT_NAT = (uid?: number, gid?: number): string[] => [
  ...NAT_HEAD,
  ...NAT_FIXED,
  ...INBOUND_ALL,
  ...OUTPUT_HEAD(),
  ...OWNERS(uid, gid),
  ...OUTPUT_TAIL,
];

/** TPROXY: inbound in mangle; nat keeps only the outbound rules. */
const TPROXY_MANGLE = (uid = 1337, gid = 1337): string[] => [
  '*mangle',
  // Unchanged since 1.17.8.
  ...TPROXY_CHAINS,
  ...[15020, 15021, 15090].map((p) => `-A ISTIO_INBOUND -p tcp --dport ${p} -j RETURN`),
  '-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
  '-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY',
  '-A PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark',
  '-A OUTPUT -p tcp -o lo -m mark --mark 1337 -j RETURN',
  `-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --uid-owner ${uid} -j MARK --set-mark 1338`,
  `-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --gid-owner ${gid} -j MARK --set-mark 1338`,
  '-A OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark',
  '-I ISTIO_INBOUND 1 -p tcp -m mark --mark 1337 -j RETURN',
  '-I ISTIO_INBOUND 2 -p tcp -s 127.0.0.6/32 -i lo -j RETURN',
  '-I ISTIO_INBOUND 3 -p tcp -i lo -m mark ! --mark 1338 -j RETURN',
];
const TPROXY_NAT = (uid?: number, gid?: number): string[] => [
  ...NAT_HEAD,
  ...NAT_FIXED,
  ...OUTPUT_HEAD(),
  ...OWNERS(uid, gid),
  ...OUTPUT_TAIL,
];

/**
 * A golden's inputs where the _test.go's are the same at 1.30.3 as at 1.17.8 (run_test.go's all, and
 * plugin_dryrun_test.go's for the goldens both releases have): the 1.17.8 case's pod.
 */
function sameInputs(name: string, v4: string, v6?: string): ConformanceCase {
  const golden = name.includes('.') ? `${CNI}${name}` : `${TOOLS}${name}.golden`;
  const c = CASES.find((x) => x.golden === golden);
  if (!c) throw new Error(`no 1.17.8 case for ${golden}`);
  return {
    golden,
    annotations: c.annotations,
    ...(c.proxyEnv ? { proxyEnv: c.proxyEnv } : {}),
    v4,
    ...(v6 ? { v6 } : {}),
  };
}

export const CASES_1_30: ConformanceCase[] = [
  { golden: `${CNI}basic.txt.golden`, annotations: {}, v4: text(DEFAULT_NAT()) },
  {
    golden: `${CNI}custom-uid.txt.golden`,
    annotations: {},
    proxy: CUSTOM,
    v4: text(DEFAULT_NAT(CUSTOM.runAsUser, CUSTOM.runAsGroup)),
  },
  { golden: `${CNI}tproxy.txt.golden`, annotations: { [MODE]: 'TPROXY' }, v4: text(TPROXY_MANGLE(), TPROXY_NAT()) },
  {
    golden: `${CNI}custom-uid-tproxy.txt.golden`,
    annotations: { [MODE]: 'TPROXY' },
    proxy: CUSTOM,
    v4: text(TPROXY_MANGLE(CUSTOM.runAsUser, CUSTOM.runAsGroup), TPROXY_NAT(CUSTOM.runAsUser, CUSTOM.runAsGroup)),
  },
  {
    golden: `${CNI}dns.txt.golden`,
    annotations: {},
    proxyEnv: { ISTIO_META_DNS_CAPTURE: 'true' },
    v4: text(
      [
        ...NAT_HEAD,
        '-N ISTIO_OUTPUT_DNS',
        ...NAT_FIXED,
        ...INBOUND_ALL,
        ...OUTPUT_HEAD(),
        // The uid's rule skips DNS and HBONE in one multiport match; the gid's skips HBONE only.
        '-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m multiport ! --dports 53,15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT',
        '-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT',
        '-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --gid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -j ISTIO_OUTPUT_DNS',
        '-A ISTIO_OUTPUT_DNS -p tcp --dport 53 -j REDIRECT --to-ports 15053',
        '-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-port 15053',
        ...OUTPUT_TAIL,
      ],
      [
        '*raw',
        '-N ISTIO_OUTPUT_DNS',
        '-N ISTIO_INBOUND',
        '-A OUTPUT -j ISTIO_OUTPUT_DNS',
        ...['uid', 'gid'].flatMap((k) => [
          `-A ISTIO_OUTPUT_DNS -p udp --dport 53 -m owner --${k}-owner 1337 -j CT --zone 1`,
          `-A ISTIO_OUTPUT_DNS -p udp --sport 15053 -m owner --${k}-owner 1337 -j CT --zone 2`,
        ]),
        '-A PREROUTING -j ISTIO_INBOUND',
        '-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j CT --zone 2',
        '-A ISTIO_INBOUND -p udp --sport 53 -j CT --zone 1',
      ],
    ),
  },
  // A loopback include range: app → app over lo is captured, so no owner-negated lo RETURNs; and
  // 1.30 writes no final RETURN after the include ranges.
  sameInputs(
    'include-exclude-ip.txt.golden',
    text([
      ...NAT_HEAD,
      ...NAT_FIXED,
      ...INBOUND_ALL,
      ...OUTPUT_HEAD(),
      ...OWNERS(1337, 1337, false),
      '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
      '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN',
      '-A ISTIO_OUTPUT -d 127.0.0.0/8 -j ISTIO_REDIRECT',
    ]),
  ),
  sameInputs(
    'include-exclude-ports.txt.golden',
    text([
      ...NAT_HEAD,
      ...NAT_FIXED,
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A ISTIO_INBOUND -p tcp --dport 1111 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_INBOUND -p tcp --dport 2222 -j ISTIO_IN_REDIRECT',
      ...OUTPUT_HEAD([5555, 6666]),
      ...OWNERS(),
      ...OUTPUT_TAIL,
    ]),
  ),
  {
    // 1.30 drops invalid packets through a chain of its own.
    golden: `${CNI}invalid-drop.txt.golden`,
    annotations: {},
    proxyEnv: { INVALID_DROP: 'true' },
    v4: text(
      [
        '*mangle',
        '-N ISTIO_DROP',
        '-A PREROUTING -m conntrack --ctstate INVALID -j ISTIO_DROP',
        '-A ISTIO_DROP -j DROP',
      ],
      DEFAULT_NAT(),
    ),
  },
];

/** run_test.go's empty config, IPv4 or IPv6, after the given PREROUTING/OUTPUT and inbound rules. */
const TOOLS_NAT = (v6: boolean, early: string[] = [], inbound: string[] = []): string[] => [
  ...NAT_HEAD,
  ...early,
  ...NAT_FIXED,
  ...inbound,
  '-A OUTPUT -j ISTIO_OUTPUT',
  `-A ISTIO_OUTPUT -o lo -s ${v6 ? '::6/128' : '127.0.0.6/32'} -j RETURN`,
  ...OWNERS(1337, 1337, true, v6 ? '::1/128' : '127.0.0.1/32'),
  `-A ISTIO_OUTPUT -d ${v6 ? '::1/128' : '127.0.0.1/32'} -j RETURN`,
];
const INBOUND_PORTS = (...ports: number[]): string[] => [
  '-A PREROUTING -p tcp -j ISTIO_INBOUND',
  ...ports.map((p) => `-A ISTIO_INBOUND -p tcp --dport ${p} -j ISTIO_IN_REDIRECT`),
];
const VIRT_RETURN = (...ifs: string[]): string[] => ifs.map((i) => `-I PREROUTING 1 -i ${i} -j RETURN`);
const REDIRECT_PORTS = [
  '-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT',
  '-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT',
];

const PORTS_4000_5000 = (v6: boolean, virt: boolean): string =>
  text(TOOLS_NAT(v6, virt ? VIRT_RETURN('eth0', 'eth1') : [], INBOUND_PORTS(4000, 5000)));

CASES_1_30.push(
  sameInputs(
    'basic-exclude-nic',
    text(TOOLS_NAT(false, ['-A PREROUTING -i not-istio-nic -j RETURN', '-A OUTPUT -o not-istio-nic -j RETURN'])),
  ),
  sameInputs(
    'drop-invalid',
    text(
      [
        '*mangle',
        '-N ISTIO_DROP',
        '-A PREROUTING -m conntrack --ctstate INVALID -j ISTIO_DROP',
        '-A ISTIO_DROP -j DROP',
      ],
      TOOLS_NAT(false),
    ),
  ),
  sameInputs('empty', text(TOOLS_NAT(false))),
  sameInputs('inbound-ports-include', text(TOOLS_NAT(false, [], INBOUND_PORTS(32000, 31000)))),
  sameInputs(
    'inbound-ports-tproxy',
    text(
      [
        ...TPROXY_MANGLE().filter((l) => !l.startsWith('-A ISTIO_INBOUND')),
        ...[32000, 31000].flatMap((p) => [
          `-A ISTIO_INBOUND -p tcp --dport ${p} -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT`,
          `-A ISTIO_INBOUND -p tcp --dport ${p} -j ISTIO_TPROXY`,
        ]),
      ],
      TOOLS_NAT(false),
    ),
  ),
  // 1.30 writes no RETURN after the include ranges: the rest falls off the end of ISTIO_OUTPUT.
  sameInputs('ipnets', text([...TOOLS_NAT(false), '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT'])),
  sameInputs(
    'ipnets-with-kube-virt-interfaces',
    text([
      ...TOOLS_NAT(false, VIRT_RETURN('eth1', 'eth2')),
      '-I PREROUTING 1 -i eth1 -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth2 -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT',
    ]),
  ),
  sameInputs(
    'kube-virt-interfaces',
    text([
      ...TOOLS_NAT(false, VIRT_RETURN('eth1', 'eth2')),
      '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth1 -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth2 -j ISTIO_REDIRECT',
    ]),
  ),
  sameInputs('outbound-ports-include', text([...TOOLS_NAT(false), ...REDIRECT_PORTS])),
  // The pod's ISTIO_DUAL_STACK: the same rules for IPv6 with ::1 and ::6.
  sameInputs('ipv6-empty-inbound-ports', text(TOOLS_NAT(false)), text(TOOLS_NAT(true))),
  sameInputs('ipv6-inbound-ports', PORTS_4000_5000(false, false), PORTS_4000_5000(true, false)),
  sameInputs('ipv6-virt-interfaces', PORTS_4000_5000(false, true), PORTS_4000_5000(true, true)),
  sameInputs(
    'ipv6-ipnets',
    PORTS_4000_5000(false, true),
    text([
      ...TOOLS_NAT(true, VIRT_RETURN('eth0', 'eth1'), INBOUND_PORTS(4000, 5000)),
      '-A ISTIO_OUTPUT -d 2001:db8::/32 -j RETURN',
      '-I PREROUTING 1 -i eth0 -d 2001:db8::/32 -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth1 -d 2001:db8::/32 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -d 2001:db8::/32 -j ISTIO_REDIRECT',
    ]),
  ),
  sameInputs(
    'ipv6-outbound-ports',
    text([...TOOLS_NAT(false), ...REDIRECT_PORTS]),
    text([...TOOLS_NAT(true), ...REDIRECT_PORTS]),
  ),
);

/** 1.17.8's capture goldens that 1.30.3 still has, skipped for the same reasons (same run_test.go inputs). */
const SKIPPED_TOOLS_AS_1_17 = SKIPPED.filter(
  (s) => s.golden.startsWith(TOOLS) && !s.golden.endsWith('/logging.golden'),
);

export const SKIPPED_1_30: SkippedGolden[] = [
  ...SKIPPED_TOOLS_AS_1_17,
  {
    golden: `${TOOLS}host-ipv4-loopback-cidr.golden`,
    reason:
      'HostIPv4LoopbackCidr (127.0.0.1/8 for the loopback rules) has no pod-level knob; the CNI plug-in keeps 127.0.0.1/32',
  },
  {
    golden: `${CNI}status-ports.txt.golden`,
    reason: 'no input: no _test.go at 1.30.3 names this file (plugin_dryrun_test.go does not)',
  },
];

/** Every golden file at ISTIO_1_30_COMMIT (`git ls-tree` of both testdata directories). */
export const ALL_GOLDENS_1_30 = [
  ...[
    'basic',
    'custom-uid-tproxy',
    'custom-uid',
    'dns',
    'include-exclude-ip',
    'include-exclude-ports',
    'invalid-drop',
    'status-ports',
    'tproxy',
  ].map((n) => `${CNI}${n}.txt.golden`),
  ...[
    'basic-exclude-nic',
    'dns-uid-gid',
    'drop-invalid',
    'empty',
    'host-ipv4-loopback-cidr',
    'inbound-ports-include',
    'inbound-ports-tproxy',
    'inbound-ports-wildcard-tproxy',
    'inbound-ports-wildcard',
    'ip-range',
    'ipnets-with-kube-virt-interfaces',
    'ipnets',
    'ipv6-dns-outbound-owner-groups-exclude',
    'ipv6-dns-outbound-owner-groups',
    'ipv6-dns-uid-gid',
    'ipv6-empty-inbound-ports',
    'ipv6-inbound-ports',
    'ipv6-ipnets',
    'ipv6-outbound-ports',
    'ipv6-uid-gid',
    'ipv6-virt-interfaces',
    'kube-virt-interfaces',
    'loopback-outbound-iprange',
    'outbound-owner-groups-exclude',
    'outbound-owner-groups',
    'outbound-ports-include',
    'tproxy',
  ].map((n) => `${TOOLS}${n}.golden`),
];
