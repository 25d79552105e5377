// Istio 1.30.3 native-nftables conformance cases: for every golden of tools/istio-nftables (and the
// CNI plug-in's ambient nftables goldens, all skipped) whose inputs are pod annotations, istio-proxy
// env or the proxy's uid/gid, the pod and the `nft -f` text Istio's transaction has for it. Inputs
// are the iptables cases' pods (run_test.go's configs are the same for both backends); rules written
// for meshcni from tools/istio-nftables/pkg/capture/run.go's semantics and checked against the named
// golden; no Istio file is copied here.
import { CASES, type SkippedGolden } from './cases.js';
import { ALL_GOLDENS_1_30, CASES_1_30, SKIPPED_1_30 } from './cases-1.30.js';

export interface NftConformanceCase {
  /** The golden's path in istio/istio at ISTIO_1_30_COMMIT. */
  golden: string;
  annotations: Record<string, string>;
  proxyEnv?: Record<string, string>;
  proxy?: { runAsUser: number; runAsGroup: number };
  /** `nft -f` input in the shape Istio's transaction has (add table, flush table, add chain, add/insert rule). */
  nft: string;
}

const TOOLS = 'tools/istio-nftables/pkg/capture/testdata/';
const AMBIENT = 'cni/pkg/nftables/testdata/';
const IPTABLES_TOOLS = 'tools/istio-iptables/pkg/capture/testdata/';
const CNI = 'cni/pkg/plugin/testdata/';
const T = 'traffic.sidecar.istio.io/';
const MODE = 'sidecar.istio.io/interceptionMode';

const NAT = 'istio-proxy-nat';
const MANGLE = 'istio-proxy-mangle';
const RAW = 'istio-proxy-raw';
type Table = typeof NAT | typeof MANGLE | typeof RAW;

/** Each table's chains in the fixed order addIstio{Nat,Mangle,Raw}TableRules declare them; base chains with their hook. */
const CHAINS: Record<Table, [name: string, base?: string][]> = {
  [NAT]: [
    ['prerouting', '{ type nat hook prerouting priority -100 ; }'],
    ['output', '{ type nat hook output priority -100 ; }'],
    ['istio-inbound'],
    ['istio-redirect'],
    ['istio-in-redirect'],
    ['istio-output'],
    ['istio-output-dns'],
  ],
  [MANGLE]: [
    ['prerouting', '{ type filter hook prerouting priority -150 ; }'],
    ['output', '{ type route hook output priority -150 ; }'],
    ['istio-divert'],
    ['istio-tproxy'],
    ['istio-inbound'],
    ['istio-drop'],
  ],
  [RAW]: [
    ['prerouting', '{ type filter hook prerouting priority -300 ; }'],
    ['output', '{ type filter hook output priority -300 ; }'],
    ['istio-inbound'],
    ['istio-output-dns'],
  ],
};

/** One AppendRule or InsertRule of run.go: the chain, the rule text after it, and InsertRule's index. */
interface NftRule {
  chain: string;
  rule: string;
  index?: number;
}
const add = (chain: string, rule: string): NftRule => ({ chain, rule });
const insert = (index: number, chain: string, rule: string): NftRule => ({ chain, rule, index });

/**
 * A table as addIstioTableRules writes it: nothing when it has no rules; else add and flush the
 * table, declare only the chains that have rules, then the rules in run.go's order. nft refuses an
 * insert into an empty chain or at an index past its end, so run.go turns those inserts into appends.
 */
function table(name: Table, rules: NftRule[]): string[] {
  if (rules.length === 0) return [];
  for (const r of rules) {
    if (!CHAINS[name].some(([c]) => c === r.chain)) throw new Error(`${name} declares no chain ${r.chain}`);
  }
  const lines = [`add table inet ${name}`, `flush table inet ${name}`];
  for (const [chain, base] of CHAINS[name]) {
    if (rules.some((r) => r.chain === chain)) lines.push(`add chain inet ${name} ${chain}${base ? ` ${base}` : ''}`);
  }
  const count = new Map<string, number>();
  for (const r of rules) {
    const n = count.get(r.chain) ?? 0;
    lines.push(
      r.index !== undefined && n > 0 && r.index < n
        ? `insert rule inet ${name} ${r.chain} index ${r.index} ${r.rule}`
        : `add rule inet ${name} ${r.chain} ${r.rule}`,
    );
    count.set(r.chain, n + 1);
  }
  return lines;
}

/** The transaction: nat, then mangle, then raw (executeCommands' order). */
const nft = (t: { nat?: NftRule[]; mangle?: NftRule[]; raw?: NftRule[] }): string =>
  [...table(NAT, t.nat ?? []), ...table(MANGLE, t.mangle ?? []), ...table(RAW, t.raw ?? [])].join('\n') + '\n';

// ---- the fragments, in the order Run() writes them ----

/** shortCircuitExcludeInterfaces: per interface a prerouting then an output return (nat; mangle too in TPROXY). */
const EXCLUDE_NIC = (...ifs: string[]): NftRule[] =>
  ifs.flatMap((i) => [add('prerouting', `iifname ${i} counter return`), add('output', `oifname ${i} counter return`)]);
/** shortCircuitKubeInternalInterface: each reroute interface returns, inserted at the head of nat prerouting. */
const VIRT_RETURN = (...ifs: string[]): NftRule[] =>
  ifs.map((i) => insert(0, 'prerouting', `iifname ${i} counter return`));
/** 1.30 drops invalid TCP through a chain of its own. */
const DROP_INVALID = [
  add('prerouting', 'meta l4proto tcp ct state invalid counter jump istio-drop'),
  add('istio-drop', 'counter drop'),
];
/** The three nat rules every pod gets: HBONE's 15008 bypasses inbound capture; the two redirects. */
const NAT_FIXED = [
  add('istio-inbound', 'meta l4proto tcp tcp dport 15008 counter return'),
  add('istio-redirect', 'meta l4proto tcp counter redirect to :15001'),
  add('istio-in-redirect', 'meta l4proto tcp counter redirect to :15006'),
];
/** The CNI plug-in always excludes the status, health and metrics ports from inbound capture. */
const INBOUND_EXCLUDED = [15020, 15021, 15090];

/** REDIRECT mode inbound: every port but the excluded ones ('*'), or only the listed ones. */
function INBOUND_REDIRECT(ports: '*' | number[]): NftRule[] {
  const jump = add('prerouting', 'meta l4proto tcp counter jump istio-inbound');
  if (ports !== '*')
    return [
      jump,
      ...ports.map((p) => add('istio-inbound', `meta l4proto tcp tcp dport ${p} counter jump istio-in-redirect`)),
    ];
  return [
    jump,
    ...INBOUND_EXCLUDED.map((p) => add('istio-inbound', `meta l4proto tcp tcp dport ${p} counter return`)),
    add('istio-inbound', 'meta l4proto tcp counter jump istio-in-redirect'),
  ];
}

/**
 * Every protocol enters istio-output; an excluded port is excluded for TCP and UDP; inbound
 * passthrough (127.0.0.6, and ::6 when IPv6 is on) returns. No family pin on the jump or the port
 * rules: in an inet table they apply to IPv6 too, even in a single-stack pod.
 */
const OUTPUT_HEAD = (excluded: number[], v6: boolean): NftRule[] => [
  add('output', 'counter jump istio-output'),
  ...excluded.flatMap((p) => [
    add('istio-output', `tcp dport ${p} counter return`),
    add('istio-output', `udp dport ${p} counter return`),
  ]),
  add('istio-output', 'oifname lo ip saddr 127.0.0.6/32 counter return'),
  ...(v6 ? [add('istio-output', 'oifname lo ip6 saddr ::6/128 counter return')] : []),
];

interface Owners {
  uid?: number;
  gid?: number;
  v6?: boolean;
  /** DNS capture: the uid's lo → inbound rule also skips 53, and the app's lo RETURNs skip 53. */
  dns?: boolean;
  /** False when an included range is a loopback one: app → app over lo is then captured. */
  loopbackReturn?: boolean;
}

/** The uid block then the gid block of istio-output; only the uid's lo → inbound rule skips DNS. */
function OWNERS({ uid = 1337, gid = 1337, v6 = false, dns = false, loopbackReturn = true }: Owners = {}): NftRule[] {
  return (
    [
      ['skuid', uid, dns ? '{ 53, 15008 }' : '15008'],
      ['skgid', gid, '15008'],
    ] as const
  ).flatMap(([k, id, skipped]) => [
    add(
      'istio-output',
      `oifname lo meta l4proto tcp ip daddr != 127.0.0.1/32 tcp dport != ${skipped} ${k} ${id} counter jump istio-in-redirect`,
    ),
    ...(v6
      ? [
          add(
            'istio-output',
            `oifname lo meta l4proto tcp ip6 daddr != ::1/128 tcp dport != ${skipped} ${k} ${id} counter jump istio-in-redirect`,
          ),
        ]
      : []),
    ...(loopbackReturn
      ? [
          add(
            'istio-output',
            dns
              ? `oifname lo meta l4proto tcp tcp dport != 53 ${k} != ${id} counter return`
              : `oifname lo ${k} != ${id} counter return`,
          ),
        ]
      : []),
    add('istio-output', `${k} ${id} counter return`),
  ]);
}

/** SetupDNSRedir with CaptureAllDNS (the CNI plug-in sets both from ISTIO_META_DNS_CAPTURE): nat's part. */
const DNS_NAT = [
  add('istio-output', 'counter jump istio-output-dns'),
  add('istio-output-dns', 'meta l4proto tcp tcp dport 53 counter redirect to :15053'),
  add('istio-output-dns', 'udp dport 53 counter redirect to :15053'),
];
/** Its raw part: the proxy's DNS in conntrack zone 1 (upstream) and 2 (answers to apps); the apps' in 2, replies in 1. */
const DNS_RAW = (uid = 1337, gid = 1337): NftRule[] => [
  add('output', 'counter jump istio-output-dns'),
  ...(
    [
      ['skuid', uid],
      ['skgid', gid],
    ] as const
  ).flatMap(([k, id]) => [
    add('istio-output-dns', `udp dport 53 meta ${k} ${id} counter ct zone set 1`),
    add('istio-output-dns', `udp sport 15053 meta ${k} ${id} counter ct zone set 2`),
  ]),
  add('prerouting', 'counter jump istio-inbound'),
  add('istio-output-dns', 'udp dport 53 counter ct zone set 2'),
  add('istio-inbound', 'udp sport 53 counter ct zone set 1'),
];

/** Envoy-aware apps and container-to-container traffic over localhost are not captured. */
const LOOPBACK_RETURN = (v6: boolean): NftRule[] => [
  add('istio-output', 'ip daddr 127.0.0.1/32 counter return'),
  ...(v6 ? [add('istio-output', 'ip6 daddr ::1/128 counter return')] : []),
];
const EXCLUDE_RANGES = (v4: string[], v6: string[] = []): NftRule[] => [
  ...v4.map((c) => add('istio-output', `ip daddr ${c} counter return`)),
  ...v6.map((c) => add('istio-output', `ip6 daddr ${c} counter return`)),
];
const INCLUDE_PORTS = (...ports: number[]): NftRule[] =>
  ports.map((p) => add('istio-output', `tcp dport ${p} counter jump istio-redirect`));
/** Outbound '*': the rest of istio-output is captured, and so is whatever a reroute interface brings in. */
const INCLUDE_ALL = (...virt: string[]): NftRule[] => [
  add('istio-output', 'counter jump istio-redirect'),
  ...virt.map((i) => insert(0, 'prerouting', `iifname ${i} counter jump istio-redirect`)),
];
/** Outbound ranges: per range, the reroute interfaces' prerouting inserts then the istio-output redirect. No final RETURN. */
const INCLUDE_RANGES = (v4: string[], v6: string[], virt: string[] = []): NftRule[] =>
  (
    [
      ['ip', v4],
      ['ip6', v6],
    ] as const
  ).flatMap(([family, cidrs]) =>
    cidrs.flatMap((c) => [
      ...virt.map((i) => insert(0, 'prerouting', `iifname ${i} ${family} daddr ${c} counter jump istio-redirect`)),
      add('istio-output', `${family} daddr ${c} counter jump istio-redirect`),
    ]),
  );

/** TPROXY mode's divert and tproxy chains, and mangle prerouting's jump to istio-inbound. */
const TPROXY_CHAINS = (v6: boolean): NftRule[] => [
  add('istio-divert', 'counter meta mark set 1337'),
  add('istio-divert', 'counter accept'),
  add(
    'istio-tproxy',
    'meta l4proto tcp ip daddr != 127.0.0.1/32 tproxy ip to :15006 meta mark set 1337 counter accept',
  ),
  ...(v6
    ? [
        add(
          'istio-tproxy',
          'meta l4proto tcp ip6 daddr != ::1/128 tproxy ip6 to :15006 meta mark set 1337 counter accept',
        ),
      ]
    : []),
  add('prerouting', 'meta l4proto tcp counter jump istio-inbound'),
];
/** TPROXY inbound '*': the excluded ports return, established connections divert, new ones are tproxied. */
const TPROXY_INBOUND_ALL = [
  ...INBOUND_EXCLUDED.map((p) => add('istio-inbound', `meta l4proto tcp tcp dport ${p} counter return`)),
  add('istio-inbound', 'meta l4proto tcp ct state related,established counter jump istio-divert'),
  add('istio-inbound', 'meta l4proto tcp counter jump istio-tproxy'),
];
const TPROXY_INBOUND_PORTS = (...ports: number[]): NftRule[] =>
  ports.flatMap((p) => [
    add('istio-inbound', `meta l4proto tcp ct state related,established tcp dport ${p} counter jump istio-divert`),
    add('istio-inbound', `meta l4proto tcp tcp dport ${p} counter jump istio-tproxy`),
  ]);

/**
 * What Run() writes last in TPROXY mode, even with no inbound ports: the marks, then three guards
 * inserted at 0, 1 and 2 of mangle istio-inbound. With IPv6 the ::6 guard is also inserted at 1, so
 * it lands before 127.0.0.6's, and the "lo, not 1338" guard then lands between them.
 */
const TPROXY_TAIL = (uid = 1337, gid = 1337, v6 = false): NftRule[] => [
  add('prerouting', 'meta l4proto tcp mark 1337 counter ct mark set mark'),
  add('output', 'oifname lo meta l4proto tcp mark 1337 counter return'),
  ...(
    [
      ['skuid', uid],
      ['skgid', gid],
    ] as const
  ).flatMap(([k, id]) => [
    add('output', `oifname lo meta l4proto tcp ip daddr != 127.0.0.1/32 ${k} ${id} counter meta mark set 1338`),
    ...(v6
      ? [add('output', `oifname lo meta l4proto tcp ip6 daddr != ::1/128 ${k} ${id} counter meta mark set 1338`)]
      : []),
  ]),
  add('output', 'meta l4proto tcp ct mark 1337 counter meta mark set ct mark'),
  insert(0, 'istio-inbound', 'meta l4proto tcp mark 1337 counter return'),
  insert(1, 'istio-inbound', 'iifname lo meta l4proto tcp ip saddr 127.0.0.6/32 counter return'),
  ...(v6 ? [insert(1, 'istio-inbound', 'iifname lo meta l4proto tcp ip6 saddr ::6/128 counter return')] : []),
  insert(2, 'istio-inbound', 'iifname lo meta l4proto tcp mark != 1338 counter return'),
];

// ---- run_test.go's goldens ----

/** run_test.go's base config (no inbound ports, no outbound ranges, no excluded ports), IPv4 or dual stack. */
const TOOLS_NAT = (v6: boolean, early: NftRule[] = [], inbound: NftRule[] = []): NftRule[] => [
  ...early,
  ...NAT_FIXED,
  ...inbound,
  ...OUTPUT_HEAD([], v6),
  ...OWNERS({ v6 }),
  ...LOOPBACK_RETURN(v6),
];
const PORTS_4000_5000 = INBOUND_REDIRECT([4000, 5000]);

/** The pod of the iptables case for the same golden name (run_test.go's inputs are the same for both backends). */
function sameInputs(name: string, rules: Parameters<typeof nft>[0]): NftConformanceCase {
  const c = CASES.find((x) => x.golden === `${IPTABLES_TOOLS}${name}.golden`);
  if (!c) throw new Error(`no iptables case for ${name}`);
  return {
    golden: `${TOOLS}${name}.golden`,
    annotations: c.annotations,
    ...(c.proxyEnv ? { proxyEnv: c.proxyEnv } : {}),
    ...(c.proxy ? { proxy: c.proxy } : {}),
    nft: nft(rules),
  };
}

export const NFT_CASES_1_30: NftConformanceCase[] = [
  sameInputs('basic-exclude-nic', { nat: TOOLS_NAT(false, EXCLUDE_NIC('not-istio-nic')) }),
  sameInputs('drop-invalid', { nat: TOOLS_NAT(false), mangle: DROP_INVALID }),
  sameInputs('empty', { nat: TOOLS_NAT(false) }),
  sameInputs('inbound-ports-include', { nat: TOOLS_NAT(false, [], INBOUND_REDIRECT([32000, 31000])) }),
  sameInputs('inbound-ports-tproxy', {
    nat: TOOLS_NAT(false),
    mangle: [...TPROXY_CHAINS(false), ...TPROXY_INBOUND_PORTS(32000, 31000), ...TPROXY_TAIL()],
  }),
  sameInputs('ipnets', { nat: [...TOOLS_NAT(false), ...INCLUDE_RANGES(['10.0.0.0/8'], [])] }),
  sameInputs('ipnets-with-kube-virt-interfaces', {
    nat: [...TOOLS_NAT(false, VIRT_RETURN('eth1', 'eth2')), ...INCLUDE_RANGES(['10.0.0.0/8'], [], ['eth1', 'eth2'])],
  }),
  sameInputs('kube-virt-interfaces', {
    nat: [...TOOLS_NAT(false, VIRT_RETURN('eth1', 'eth2')), ...INCLUDE_ALL('eth1', 'eth2')],
  }),
  sameInputs('outbound-ports-include', { nat: [...TOOLS_NAT(false), ...INCLUDE_PORTS(32000, 31000)] }),
  // ISTIO_DUAL_STACK: one inet table, the IPv6 twins of the family-pinned rules added next to them.
  sameInputs('ipv6-empty-inbound-ports', { nat: TOOLS_NAT(true) }),
  sameInputs('ipv6-inbound-ports', { nat: TOOLS_NAT(true, [], PORTS_4000_5000) }),
  sameInputs('ipv6-virt-interfaces', { nat: TOOLS_NAT(true, VIRT_RETURN('eth0', 'eth1'), PORTS_4000_5000) }),
  sameInputs('ipv6-ipnets', {
    nat: [
      ...TOOLS_NAT(true, VIRT_RETURN('eth0', 'eth1'), PORTS_4000_5000),
      ...EXCLUDE_RANGES([], ['2001:db8::/32']),
      ...INCLUDE_RANGES([], ['2001:db8::/32'], ['eth0', 'eth1']),
    ],
  }),
  sameInputs('ipv6-outbound-ports', { nat: [...TOOLS_NAT(true), ...INCLUDE_PORTS(32000, 31000)] }),
  {
    // No inbound ports, yet TPROXY mode still writes its marks and the istio-inbound guards (which
    // nothing jumps to); the three inserts land on an empty or too-short chain, so all are appends.
    golden: `${TOOLS}inbound-ports-empty-tproxy.golden`,
    annotations: {
      [`${T}includeInboundPorts`]: '',
      [`${T}includeOutboundIPRanges`]: '',
      [`${T}excludeOutboundPorts`]: '',
      [MODE]: 'TPROXY',
    },
    nft: nft({ nat: TOOLS_NAT(false), mangle: TPROXY_TAIL() }),
  },
];

// ---- the CNI plug-in's own pods through the nft backend (no golden) ----

/** The CNI plug-in's default pod: inbound '*' (15020, 15021, 15090 excluded), outbound '*', 15020 excluded outbound. */
const CNI_NAT = (o: Owners & { inbound?: NftRule[]; early?: NftRule[]; outbound?: NftRule[] } = {}): NftRule[] => [
  ...(o.early ?? []),
  ...NAT_FIXED,
  ...(o.inbound ?? INBOUND_REDIRECT('*')),
  ...OUTPUT_HEAD([15020], o.v6 ?? false),
  ...OWNERS(o),
  ...(o.dns ? DNS_NAT : []),
  ...LOOPBACK_RETURN(o.v6 ?? false),
  ...(o.outbound ?? INCLUDE_ALL()),
];
const CNI_TPROXY_MANGLE = (uid?: number, gid?: number, v6 = false, early: NftRule[] = []): NftRule[] => [
  ...early,
  ...TPROXY_CHAINS(v6),
  ...TPROXY_INBOUND_ALL,
  ...TPROXY_TAIL(uid, gid, v6),
];

/** The pod of cases-1.30.ts's CNI case for this golden. */
function cniPod(name: string): Omit<NftConformanceCase, 'golden' | 'nft'> {
  const c = CASES_1_30.find((x) => x.golden === `${CNI}${name}.txt.golden`);
  if (!c) throw new Error(`no 1.30 CNI case for ${name}`);
  return {
    annotations: c.annotations,
    ...(c.proxyEnv ? { proxyEnv: c.proxyEnv } : {}),
    ...(c.proxy ? { proxy: c.proxy } : {}),
  };
}
/** plugin_dryrun_test.go's custom uid and gid, as cases-1.30.ts gives them. */
const CUSTOM_POD = cniPod('custom-uid');
if (!CUSTOM_POD.proxy) throw new Error('the custom-uid pod has no proxy uid/gid');
const CUSTOM = CUSTOM_POD.proxy;

/** No golden: the CNI plug-in's own inputs (its iptables goldens' pods) run through the nft backend, expected text from run.go. */
export const NFT_CNI_1_30: (Omit<NftConformanceCase, 'golden'> & { name: string })[] = [
  { name: 'basic', ...cniPod('basic'), nft: nft({ nat: CNI_NAT() }) },
  {
    name: 'custom-uid',
    ...cniPod('custom-uid'),
    nft: nft({ nat: CNI_NAT({ uid: CUSTOM.runAsUser, gid: CUSTOM.runAsGroup }) }),
  },
  { name: 'tproxy', ...cniPod('tproxy'), nft: nft({ nat: CNI_NAT({ inbound: [] }), mangle: CNI_TPROXY_MANGLE() }) },
  {
    name: 'custom-uid-tproxy',
    ...cniPod('custom-uid-tproxy'),
    nft: nft({
      nat: CNI_NAT({ uid: CUSTOM.runAsUser, gid: CUSTOM.runAsGroup, inbound: [] }),
      mangle: CNI_TPROXY_MANGLE(CUSTOM.runAsUser, CUSTOM.runAsGroup),
    }),
  },
  { name: 'dns', ...cniPod('dns'), nft: nft({ nat: CNI_NAT({ dns: true }), raw: DNS_RAW() }) },
  {
    // A loopback include range: app → app over lo is captured, so no owner-negated lo RETURNs.
    name: 'include-exclude-ip',
    ...cniPod('include-exclude-ip'),
    nft: nft({
      nat: CNI_NAT({
        loopbackReturn: false,
        outbound: [...EXCLUDE_RANGES(['10.0.0.0/8']), ...INCLUDE_RANGES(['127.0.0.0/8'], [])],
      }),
    }),
  },
  {
    name: 'include-exclude-ports',
    ...cniPod('include-exclude-ports'),
    nft: nft({
      nat: [
        ...NAT_FIXED,
        ...INBOUND_REDIRECT([1111, 2222]),
        ...OUTPUT_HEAD([5555, 6666], false),
        ...OWNERS(),
        ...LOOPBACK_RETURN(false),
        ...INCLUDE_ALL(),
      ],
    }),
  },
  { name: 'invalid-drop', ...cniPod('invalid-drop'), nft: nft({ nat: CNI_NAT(), mangle: DROP_INVALID }) },
  {
    // The ::6 guard is inserted at 1 after 127.0.0.6's, so it ends up first of the two.
    name: 'dns-tproxy-dual-stack',
    annotations: { [MODE]: 'TPROXY' },
    proxyEnv: { ISTIO_META_DNS_CAPTURE: 'true', ISTIO_DUAL_STACK: 'true' },
    nft: nft({
      nat: CNI_NAT({ dns: true, v6: true, inbound: [] }),
      mangle: CNI_TPROXY_MANGLE(1337, 1337, true),
      raw: DNS_RAW(),
    }),
  },
  {
    // eth1's return is the first prerouting rule (an append); each range's reroute rule is then a
    // real insert at the head, so the IPv6 one ends up first.
    name: 'dual-stack-ranges-reroute',
    annotations: {
      [`${T}includeOutboundIPRanges`]: '10.0.0.0/8,fd00::/8',
      [`${T}excludeOutboundIPRanges`]: '10.1.0.0/16,fd00:1::/32',
      'istio.io/reroute-virtual-interfaces': 'eth1',
    },
    proxyEnv: { ISTIO_DUAL_STACK: 'true' },
    nft: nft({
      nat: CNI_NAT({
        v6: true,
        early: VIRT_RETURN('eth1'),
        outbound: [
          ...EXCLUDE_RANGES(['10.1.0.0/16'], ['fd00:1::/32']),
          ...INCLUDE_RANGES(['10.0.0.0/8'], ['fd00::/8'], ['eth1']),
        ],
      }),
    }),
  },
  {
    // TPROXY: the excluded interface returns in mangle as well as in nat.
    name: 'exclude-nic-tproxy',
    annotations: { [`${T}excludeInterfaces`]: 'eth9', [MODE]: 'TPROXY' },
    nft: nft({
      nat: CNI_NAT({ early: EXCLUDE_NIC('eth9'), inbound: [] }),
      mangle: CNI_TPROXY_MANGLE(undefined, undefined, false, EXCLUDE_NIC('eth9')),
    }),
  },
];

// ---- skips ----

const AMBIENT_REASON =
  'ambient mode (ztunnel in-pod redirection, istio-ambient-* tables): not sidecar capture, which is all meshcni programs';

/** The iptables goldens' reasons hold for their nft twins: run_test.go gives both the same config. */
function skippedAsIptables(name: string): SkippedGolden {
  const s = SKIPPED_1_30.find((x) => x.golden === `${IPTABLES_TOOLS}${name}.golden`);
  if (!s) throw new Error(`no iptables skip for ${name}`);
  return { golden: `${TOOLS}${name}.golden`, reason: s.reason };
}

const AMBIENT_GOLDENS = [
  'default',
  'default_ipv6',
  'dns_pod_disabled_and_on_globally',
  'dns_pod_disabled_and_on_globally_ipv6',
  'dns_pod_enabled_and_off_globally',
  'dns_pod_enabled_and_off_globally_ipv6',
  'hostprobe',
  'hostprobe_ipv6',
  'ingress',
  'ingress_and_virtual_interfaces',
  'ingress_and_virtual_interfaces_ipv6',
  'ingress_ipv6',
  'virtual_interfaces',
  'virtual_interfaces_ipv6',
].map((n) => `${AMBIENT}${n}.golden`);

export const NFT_SKIPPED_1_30: SkippedGolden[] = [
  ...[
    'dns-uid-gid',
    'host-ipv4-loopback-cidr',
    'inbound-ports-wildcard-tproxy',
    'inbound-ports-wildcard',
    'ip-range',
    'ipv6-dns-outbound-owner-groups-exclude',
    'ipv6-dns-outbound-owner-groups',
    'ipv6-dns-uid-gid',
    'ipv6-uid-gid',
    'loopback-outbound-iprange',
    'outbound-owner-groups-exclude',
    'outbound-owner-groups',
    'tproxy',
  ].map(skippedAsIptables),
  ...AMBIENT_GOLDENS.map((golden) => ({ golden, reason: AMBIENT_REASON })),
];

/**
 * Every nftables golden at ISTIO_1_30_COMMIT (`git ls-tree` of both testdata directories):
 * istio-nftables' capture goldens are istio-iptables' by name, plus inbound-ports-empty-tproxy.
 */
const IPTABLES_CAPTURE = 'tools/istio-iptables/pkg/capture/testdata/';
export const ALL_NFT_GOLDENS_1_30: string[] = [
  ...ALL_GOLDENS_1_30.filter((g) => g.startsWith(IPTABLES_CAPTURE)).map((g) => g.replace(IPTABLES_CAPTURE, TOOLS)),
  `${TOOLS}inbound-ports-empty-tproxy.golden`,
  ...AMBIENT_GOLDENS,
];

/**
 * The git blob id of each case's golden at ISTIO_1_30_COMMIT (`git ls-tree 1.30.3 <testdata dir>`): a
 * case's text hashes to it only if it is byte for byte the golden Istio's own test compares against.
 */
export const NFT_GOLDEN_BLOBS_1_30: Record<string, string> = {
  'basic-exclude-nic': 'c228881ee1432eb8e8f599a9120603152e11eaa6',
  'drop-invalid': 'adf2c8b38fefc601c0f7695101ccb26a57c23d98',
  empty: '13a98e25ee64f346ab3ad5ac941b22d96f3538cb',
  'inbound-ports-include': '1d6bf9abcb4ad8efa9a6bf780c3062361bd188ad',
  'inbound-ports-tproxy': '4f89a6ac8b4d12c9e6170910123aa8fd9f1f19aa',
  ipnets: '730022d630a8970c9262fb15dfc687f9d3044b44',
  'ipnets-with-kube-virt-interfaces': '0baafae4c1c94a0ea5ac44b66826c01e5ecbd8f2',
  'kube-virt-interfaces': 'c307bf5b09c3c1d3642346bb33714ec55bd7bcc7',
  'outbound-ports-include': 'f872875e53dae022d4a2d4b5913ba8d2c98aa989',
  'ipv6-empty-inbound-ports': 'b10b5c4dfbb1d159b2572b8baa6998c739bd72bf',
  'ipv6-inbound-ports': '2ca74f843effbef202fb2ce88d7ceae40f125579',
  'ipv6-virt-interfaces': 'cbaf53552b6b94875974eb82662bf35ac32a98e7',
  'ipv6-ipnets': '794bbb2d54827b4293e3cb5a94174da0b7a22bc3',
  'ipv6-outbound-ports': 'eb63b5ede496ce102ea0b0195d3c3c38ad40b138',
  'inbound-ports-empty-tproxy': 'f19c39669867a26d09b1734e368caa25998fd8e2',
};
