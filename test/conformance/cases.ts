// Istio 1.17.8 conformance cases: for every golden file of Istio 1.17.8 whose inputs are pod
// annotations or istio-proxy env, the pod and the rules Istio writes for it, as iptables-restore
// input in the order run.go writes them. Written for meshcni from run.go's semantics and checked
// against the named golden; no Istio file is copied here.

export const ISTIO_COMMIT = 'a781f9ee6c511d8f22140d8990c31e577b2a9676';

export interface ConformanceCase {
  /** The golden's path in istio/istio at ISTIO_COMMIT. */
  golden: string;
  /** What the golden's _test.go input maps to: pod annotations and istio-proxy env. */
  annotations: Record<string, string>;
  proxyEnv?: Record<string, string>;
  /** The istio-proxy container's securityContext uid and gid, when the test sets them. */
  proxy?: { runAsUser: number; runAsGroup: number };
  /** iptables-restore / ip6tables-restore input (`-N`, `-A`, `-I` in Istio's order). */
  v4: string;
  v6?: string;
}

export interface SkippedGolden {
  golden: string;
  reason: string;
}

const CNI = 'cni/pkg/plugin/testdata/';
const TOOLS = 'tools/istio-iptables/pkg/capture/testdata/';
const T = 'traffic.sidecar.istio.io/';
const MODE = 'sidecar.istio.io/interceptionMode';

/**
 * capture/run_test.go starts from a config with no inbound ports, no outbound ranges and no excluded
 * outbound ports; the CNI plug-in's defaults differ, so those cases set the three annotations empty.
 */
const TOOLS_BASE = {
  [`${T}includeInboundPorts`]: '',
  [`${T}includeOutboundIPRanges`]: '',
  [`${T}excludeOutboundPorts`]: '',
};
const DUAL = { ISTIO_DUAL_STACK: 'true' };

/** The four nat chains and the three rules run.go always writes first. */
const NAT_HEAD = (lines: string[] = []): string[] => [
  '*nat',
  '-N ISTIO_INBOUND',
  '-N ISTIO_REDIRECT',
  '-N ISTIO_IN_REDIRECT',
  '-N ISTIO_OUTPUT',
  ...lines,
  '-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN',
  '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
  '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
];

/** The proxy uid block then gid block of ISTIO_OUTPUT (uid = gid = 1337), without DNS capture. */
const OWNERS = (lo: string, loopbackReturn = true): string[] =>
  (['uid', 'gid'] as const).flatMap((k) => [
    `-A ISTIO_OUTPUT -o lo ! -d ${lo} -m owner --${k}-owner 1337 -j ISTIO_IN_REDIRECT`,
    ...(loopbackReturn ? [`-A ISTIO_OUTPUT -o lo -m owner ! --${k}-owner 1337 -j RETURN`] : []),
    `-A ISTIO_OUTPUT -m owner --${k}-owner 1337 -j RETURN`,
  ]);

const text = (...blocks: string[][]): string => blocks.map((b) => `${b.join('\n')}\nCOMMIT\n`).join('');

const INBOUND_ALL_REDIRECT = [
  '-A PREROUTING -p tcp -j ISTIO_INBOUND',
  '-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN',
  '-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN',
  '-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN',
  '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT',
];

/** The CNI plug-in's default pod: inbound `*`, outbound `*`, 15020 excluded both ways. */
const CNI_DEFAULT_NAT = [
  ...NAT_HEAD(),
  ...INBOUND_ALL_REDIRECT,
  '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
  '-A ISTIO_OUTPUT -p tcp --dport 15020 -j RETURN',
  '-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
  ...OWNERS('127.0.0.1/32'),
  '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
  '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
];

/** run_test.go's empty config, IPv4 or IPv6: no inbound, no outbound ranges. */
const TOOLS_EMPTY_NAT = (v6 = false): string[] => [
  ...NAT_HEAD(),
  '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
  `-A ISTIO_OUTPUT -o lo -s ${v6 ? '::6/128' : '127.0.0.6/32'} -j RETURN`,
  ...OWNERS(v6 ? '::1/128' : '127.0.0.1/32'),
  `-A ISTIO_OUTPUT -d ${v6 ? '::1/128' : '127.0.0.1/32'} -j RETURN`,
];

/** The TPROXY rules run.go appends at the end, and the three guards it inserts into mangle ISTIO_INBOUND. */
const TPROXY_TAIL = [
  '-A PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark',
  '-A OUTPUT -p tcp -o lo -m mark --mark 1337 -j RETURN',
  '-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --uid-owner 1337 -j MARK --set-mark 1338',
  '-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --gid-owner 1337 -j MARK --set-mark 1338',
  '-A OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark',
  '-I ISTIO_INBOUND 1 -p tcp -m mark --mark 1337 -j RETURN',
  '-I ISTIO_INBOUND 2 -p tcp -s 127.0.0.6/32 -i lo -j RETURN',
  '-I ISTIO_INBOUND 3 -p tcp -i lo -m mark ! --mark 1338 -j RETURN',
];
export const TPROXY_CHAINS = [
  '-N ISTIO_DIVERT',
  '-N ISTIO_TPROXY',
  '-N ISTIO_INBOUND',
  '-A ISTIO_DIVERT -j MARK --set-mark 1337',
  '-A ISTIO_DIVERT -j ACCEPT',
  '-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006',
  '-A PREROUTING -p tcp -j ISTIO_INBOUND',
];

export const CASES: ConformanceCase[] = [
  // ---- cni/pkg/plugin/testdata: inputs from plugin_dryrun_test.go ----
  { golden: `${CNI}basic.txt.golden`, annotations: {}, v4: text(CNI_DEFAULT_NAT) },
  {
    golden: `${CNI}dns.txt.golden`,
    annotations: {},
    proxyEnv: { ISTIO_META_DNS_CAPTURE: 'true' },
    v4: text(
      [
        ...NAT_HEAD(),
        ...INBOUND_ALL_REDIRECT,
        '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
        '-A ISTIO_OUTPUT -p tcp --dport 15020 -j RETURN',
        '-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
        '-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 53 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT',
        '-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT',
        '-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --gid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN',
        '-A ISTIO_OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports 15053',
        '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
        '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
        '-A OUTPUT -p udp --dport 53 -m owner --uid-owner 1337 -j RETURN',
        '-A OUTPUT -p udp --dport 53 -m owner --gid-owner 1337 -j RETURN',
        '-A OUTPUT -p udp --dport 53 -j REDIRECT --to-port 15053',
      ],
      [
        '*raw',
        '-A OUTPUT -p udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1',
        '-A OUTPUT -p udp --sport 15053 -m owner --uid-owner 1337 -j CT --zone 2',
        '-A OUTPUT -p udp --dport 53 -m owner --gid-owner 1337 -j CT --zone 1',
        '-A OUTPUT -p udp --sport 15053 -m owner --gid-owner 1337 -j CT --zone 2',
        '-A OUTPUT -p udp --dport 53 -j CT --zone 2',
        '-A PREROUTING -p udp --sport 53 -j CT --zone 1',
      ],
    ),
  },
  {
    golden: `${CNI}include-exclude-ip.txt.golden`,
    annotations: { [`${T}includeOutboundIPRanges`]: '127.0.0.0/8', [`${T}excludeOutboundIPRanges`]: '10.0.0.0/8' },
    v4: text([
      ...NAT_HEAD(),
      ...INBOUND_ALL_REDIRECT,
      '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
      '-A ISTIO_OUTPUT -p tcp --dport 15020 -j RETURN',
      '-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
      // An included loopback range drops the two "app → app over lo" RETURNs.
      ...OWNERS('127.0.0.1/32', false),
      '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
      '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN',
      '-A ISTIO_OUTPUT -d 127.0.0.0/8 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -j RETURN',
    ]),
  },
  {
    golden: `${CNI}include-exclude-ports.txt.golden`,
    annotations: {
      [`${T}includeInboundPorts`]: '1111,2222',
      [`${T}excludeInboundPorts`]: '3333,4444',
      [`${T}excludeOutboundPorts`]: '5555,6666',
    },
    v4: text([
      ...NAT_HEAD(),
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A ISTIO_INBOUND -p tcp --dport 1111 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_INBOUND -p tcp --dport 2222 -j ISTIO_IN_REDIRECT',
      '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
      '-A ISTIO_OUTPUT -p tcp --dport 5555 -j RETURN',
      '-A ISTIO_OUTPUT -p tcp --dport 6666 -j RETURN',
      '-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
      ...OWNERS('127.0.0.1/32'),
      '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
      '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
    ]),
  },
  {
    golden: `${CNI}tproxy.txt.golden`,
    annotations: { [MODE]: 'TPROXY' },
    v4: text(
      [
        '*mangle',
        ...TPROXY_CHAINS,
        '-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN',
        '-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN',
        '-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN',
        '-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
        '-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY',
        ...TPROXY_TAIL,
      ],
      [
        ...NAT_HEAD(),
        '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
        '-A ISTIO_OUTPUT -p tcp --dport 15020 -j RETURN',
        '-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
        ...OWNERS('127.0.0.1/32'),
        '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
        '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
      ],
    ),
  },
  {
    golden: `${CNI}invalid-drop.txt.golden`,
    annotations: {},
    proxyEnv: { INVALID_DROP: 'true' },
    v4: text(['*mangle', '-A PREROUTING -m conntrack --ctstate INVALID -j DROP'], CNI_DEFAULT_NAT),
  },

  // ---- tools/istio-iptables/pkg/capture/testdata: inputs from run_test.go ----
  {
    golden: `${TOOLS}basic-exclude-nic.golden`,
    annotations: { ...TOOLS_BASE, [`${T}excludeInterfaces`]: 'not-istio-nic' },
    v4: text([
      ...NAT_HEAD(['-A PREROUTING -i not-istio-nic -j RETURN', '-A OUTPUT -o not-istio-nic -j RETURN']),
      ...TOOLS_EMPTY_NAT().slice(NAT_HEAD().length),
    ]),
  },
  {
    golden: `${TOOLS}drop-invalid.golden`,
    annotations: TOOLS_BASE,
    proxyEnv: { INVALID_DROP: 'true' },
    v4: text(['*mangle', '-A PREROUTING -m conntrack --ctstate INVALID -j DROP'], TOOLS_EMPTY_NAT()),
  },
  { golden: `${TOOLS}empty.golden`, annotations: TOOLS_BASE, v4: text(TOOLS_EMPTY_NAT()) },
  {
    golden: `${TOOLS}inbound-ports-include.golden`,
    annotations: { ...TOOLS_BASE, [`${T}includeInboundPorts`]: '32000,31000' },
    v4: text([
      ...NAT_HEAD(),
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_IN_REDIRECT',
      ...TOOLS_EMPTY_NAT().slice(NAT_HEAD().length),
    ]),
  },
  {
    golden: `${TOOLS}inbound-ports-tproxy.golden`,
    annotations: { ...TOOLS_BASE, [`${T}includeInboundPorts`]: '32000,31000', [MODE]: 'TPROXY' },
    v4: text(
      [
        '*mangle',
        ...TPROXY_CHAINS,
        '-A ISTIO_INBOUND -p tcp --dport 32000 -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
        '-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_TPROXY',
        '-A ISTIO_INBOUND -p tcp --dport 31000 -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
        '-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_TPROXY',
        ...TPROXY_TAIL,
      ],
      TOOLS_EMPTY_NAT(),
    ),
  },
  {
    golden: `${TOOLS}ipnets.golden`,
    annotations: { ...TOOLS_BASE, [`${T}includeOutboundIPRanges`]: '10.0.0.0/8' },
    v4: text([...TOOLS_EMPTY_NAT(), '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT', '-A ISTIO_OUTPUT -j RETURN']),
  },
  {
    golden: `${TOOLS}ipnets-with-kube-virt-interfaces.golden`,
    annotations: {
      ...TOOLS_BASE,
      [`${T}includeOutboundIPRanges`]: '10.0.0.0/8',
      [`${T}kubevirtInterfaces`]: 'eth1,eth2',
    },
    v4: text([
      ...NAT_HEAD(['-I PREROUTING 1 -i eth1 -j RETURN', '-I PREROUTING 1 -i eth2 -j RETURN']),
      ...TOOLS_EMPTY_NAT().slice(NAT_HEAD().length),
      '-I PREROUTING 1 -i eth1 -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth2 -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -j RETURN',
    ]),
  },
  {
    golden: `${TOOLS}kube-virt-interfaces.golden`,
    annotations: { ...TOOLS_BASE, [`${T}includeOutboundIPRanges`]: '*', [`${T}kubevirtInterfaces`]: 'eth1,eth2' },
    v4: text([
      ...NAT_HEAD(['-I PREROUTING 1 -i eth1 -j RETURN', '-I PREROUTING 1 -i eth2 -j RETURN']),
      ...TOOLS_EMPTY_NAT().slice(NAT_HEAD().length),
      '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth1 -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth2 -j ISTIO_REDIRECT',
    ]),
  },
  {
    golden: `${TOOLS}outbound-ports-include.golden`,
    annotations: { ...TOOLS_BASE, [`${T}includeOutboundPorts`]: '32000,31000' },
    v4: text([
      ...TOOLS_EMPTY_NAT(),
      '-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT',
    ]),
  },
  // EnableInboundIPv6 is the pod's ISTIO_DUAL_STACK: the same rules for IPv6 with ::1 and ::6.
  {
    golden: `${TOOLS}ipv6-empty-inbound-ports.golden`,
    annotations: TOOLS_BASE,
    proxyEnv: DUAL,
    v4: text(TOOLS_EMPTY_NAT()),
    v6: text(TOOLS_EMPTY_NAT(true)),
  },
  ...(['ipv6-inbound-ports', 'ipv6-virt-interfaces'] as const).map((name) => {
    const virt = name === 'ipv6-virt-interfaces';
    const body = (v6: boolean): string[] => [
      ...NAT_HEAD(virt ? ['-I PREROUTING 1 -i eth0 -j RETURN', '-I PREROUTING 1 -i eth1 -j RETURN'] : []),
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A ISTIO_INBOUND -p tcp --dport 4000 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_INBOUND -p tcp --dport 5000 -j ISTIO_IN_REDIRECT',
      ...TOOLS_EMPTY_NAT(v6).slice(NAT_HEAD().length),
    ];
    return {
      golden: `${TOOLS}${name}.golden`,
      annotations: {
        ...TOOLS_BASE,
        [`${T}includeInboundPorts`]: '4000,5000',
        ...(virt ? { [`${T}kubevirtInterfaces`]: 'eth0,eth1' } : {}),
      },
      proxyEnv: DUAL,
      v4: text(body(false)),
      v6: text(body(true)),
    };
  }),
  {
    golden: `${TOOLS}ipv6-ipnets.golden`,
    // run_test.go's "6000,7000," has a trailing comma redirect.go would reject in an annotation; the
    // list is unused anyway (inbound ports are a list, not "*").
    annotations: {
      ...TOOLS_BASE,
      [`${T}includeInboundPorts`]: '4000,5000',
      [`${T}excludeInboundPorts`]: '6000,7000',
      [`${T}kubevirtInterfaces`]: 'eth0,eth1',
      [`${T}excludeOutboundIPRanges`]: '2001:db8::/32',
      [`${T}includeOutboundIPRanges`]: '2001:db8::/32',
    },
    proxyEnv: DUAL,
    v4: text([
      ...NAT_HEAD(['-I PREROUTING 1 -i eth0 -j RETURN', '-I PREROUTING 1 -i eth1 -j RETURN']),
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A ISTIO_INBOUND -p tcp --dport 4000 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_INBOUND -p tcp --dport 5000 -j ISTIO_IN_REDIRECT',
      ...TOOLS_EMPTY_NAT().slice(NAT_HEAD().length),
      // No IPv4 range is included: no IPv4 redirect and no trailing RETURN.
    ]),
    v6: text([
      ...NAT_HEAD(['-I PREROUTING 1 -i eth0 -j RETURN', '-I PREROUTING 1 -i eth1 -j RETURN']),
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A ISTIO_INBOUND -p tcp --dport 4000 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_INBOUND -p tcp --dport 5000 -j ISTIO_IN_REDIRECT',
      ...TOOLS_EMPTY_NAT(true).slice(NAT_HEAD().length),
      '-A ISTIO_OUTPUT -d 2001:db8::/32 -j RETURN',
      '-I PREROUTING 1 -i eth0 -d 2001:db8::/32 -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth1 -d 2001:db8::/32 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -d 2001:db8::/32 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -j RETURN',
    ]),
  },
  {
    golden: `${TOOLS}ipv6-outbound-ports.golden`,
    annotations: { ...TOOLS_BASE, [`${T}includeOutboundPorts`]: '32000,31000' },
    proxyEnv: DUAL,
    v4: text([
      ...TOOLS_EMPTY_NAT(),
      '-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT',
    ]),
    v6: text([
      ...TOOLS_EMPTY_NAT(true),
      '-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT',
    ]),
  },
];

const MULTI_ID =
  'ProxyUID "3,4" / ProxyGID "1,2": a list of proxy uids/gids has no pod-level knob (one runAsUser, one runAsGroup)';
const DNS_SERVERS =
  'DNS capture limited to resolv.conf servers (CaptureAllDNS off): the CNI plug-in always captures all DNS, no pod-level knob';
const OWNER_GROUPS = 'OwnerGroupsInclude/Exclude has no pod-level knob (the CNI plug-in never sets it)';

export const SKIPPED: SkippedGolden[] = [
  {
    golden: `${CNI}status-ports.txt.golden`,
    reason: 'no input: no _test.go at 1.17.8 (or in its history) drives this file',
  },
  { golden: `${TOOLS}dns-uid-gid.golden`, reason: `${MULTI_ID}; ${DNS_SERVERS}` },
  { golden: `${TOOLS}ip-range.golden`, reason: `${MULTI_ID}; ${DNS_SERVERS}` },
  { golden: `${TOOLS}loopback-outbound-iprange.golden`, reason: `${MULTI_ID}; ${DNS_SERVERS}` },
  { golden: `${TOOLS}ipv6-uid-gid.golden`, reason: MULTI_ID },
  { golden: `${TOOLS}ipv6-dns-uid-gid.golden`, reason: `${MULTI_ID}; ${DNS_SERVERS}` },
  { golden: `${TOOLS}tproxy.golden`, reason: DNS_SERVERS },
  {
    golden: `${TOOLS}inbound-ports-wildcard.golden`,
    reason: 'inbound "*" without 15020,15021,15090 excluded: the CNI plug-in always excludes them, no pod-level knob',
  },
  {
    golden: `${TOOLS}inbound-ports-wildcard-tproxy.golden`,
    reason: 'inbound "*" without 15020,15021,15090 excluded: the CNI plug-in always excludes them, no pod-level knob',
  },
  { golden: `${TOOLS}outbound-owner-groups.golden`, reason: OWNER_GROUPS },
  { golden: `${TOOLS}outbound-owner-groups-exclude.golden`, reason: OWNER_GROUPS },
  { golden: `${TOOLS}ipv6-dns-outbound-owner-groups.golden`, reason: OWNER_GROUPS },
  { golden: `${TOOLS}ipv6-dns-outbound-owner-groups-exclude.golden`, reason: OWNER_GROUPS },
  { golden: `${TOOLS}logging.golden`, reason: 'TraceLogging (NFLOG rules) has no pod-level knob' },
];

/** Every golden file at ISTIO_COMMIT (`git ls-tree` of both testdata directories). */
export const ALL_GOLDENS = [
  ...['basic', 'dns', 'include-exclude-ip', 'include-exclude-ports', 'invalid-drop', 'status-ports', 'tproxy'].map(
    (n) => `${CNI}${n}.txt.golden`,
  ),
  ...[
    'basic-exclude-nic',
    'dns-uid-gid',
    'drop-invalid',
    'empty',
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
    'logging',
    'loopback-outbound-iprange',
    'outbound-owner-groups-exclude',
    'outbound-owner-groups',
    'outbound-ports-include',
    'tproxy',
  ].map((n) => `${TOOLS}${n}.golden`),
];

/**
 * The case's pod as a manifest (YAML is JSON): an app container and istio-proxy with the env (and
 * uid/gid), from the given release's image.
 */
export function podManifest(
  c: Pick<ConformanceCase, 'golden' | 'annotations' | 'proxyEnv' | 'proxy'>,
  commit = ISTIO_COMMIT,
  image = 'example/proxy',
): string {
  const name = c.golden.replace(/^.*\//, '').replace(/\.(txt\.)?golden$/, '');
  const env = Object.entries(c.proxyEnv ?? {}).map(([k, value]) => ({ name: k, value }));
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: 'conformance',
        annotations: { 'meshcni.example/istio-golden': `${c.golden}@${commit}`, ...c.annotations },
      },
      spec: {
        containers: [
          { name: 'app', image: 'example/app' },
          {
            name: 'istio-proxy',
            image,
            ...(env.length ? { env } : {}),
            ...(c.proxy ? { securityContext: c.proxy } : {}),
          },
        ],
      },
    },
    null,
    2,
  );
}
