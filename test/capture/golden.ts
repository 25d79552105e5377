// The golden cases: pods and the rules istio-iptables writes for them, written out by hand from
// Istio's semantics (shared/istio-redirect-spec.md), not produced by meshcni's own builder.
// Fragments keep the table readable; each is plain iptables-save text.

export interface GoldenCase {
  name: string;
  annotations?: Record<string, string>;
  containers?: { name: string; runAsUser?: number; runAsGroup?: number; env?: Record<string, string> }[];
  namespace?: string;
  /** Expected iptables-save text: IPv4, and IPv6 for dual stack. */
  v4?: string;
  v6?: string | null;
  /** Expected skip reason, or the error message (the pattern must name annotation and value). */
  skip?: RegExp;
  error?: RegExp;
}

const BUILTIN = {
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
};

/** One `*table … COMMIT` block. */
export function table(name: keyof typeof BUILTIN, chains: string[], rules: string[]): string {
  return (
    [
      `*${name}`,
      ...BUILTIN[name].map((c) => `:${c} ACCEPT [0:0]`),
      ...chains.map((c) => `:${c} - [0:0]`),
      ...rules,
      'COMMIT',
    ].join('\n') + '\n'
  );
}

const CH = ['ISTIO_INBOUND', 'ISTIO_REDIRECT', 'ISTIO_IN_REDIRECT', 'ISTIO_OUTPUT'];
const REDIRECTS = [
  '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
  '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
];
const inRet = (ports: number[]): string[] => ports.map((p) => `-A ISTIO_INBOUND -p tcp -m tcp --dport ${p} -j RETURN`);
const DEFAULT_IN = [...inRet([15008, 15020, 15021, 15090]), '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT'];
const outPortRet = (ports: number[]): string[] =>
  ports.map((p) => `-A ISTIO_OUTPUT -p tcp -m tcp --dport ${p} -j RETURN`);

/** The proxy uid (or gid) block of ISTIO_OUTPUT. */
function owner(kind: 'uid' | 'gid', id: number, lo: string, loopbackReturn = true): string[] {
  return [
    `-A ISTIO_OUTPUT ! -d ${lo} -o lo -m owner --${kind}-owner ${id} -j ISTIO_IN_REDIRECT`,
    ...(loopbackReturn ? [`-A ISTIO_OUTPUT -o lo -m owner ! --${kind}-owner ${id} -j RETURN`] : []),
    `-A ISTIO_OUTPUT -m owner --${kind}-owner ${id} -j RETURN`,
  ];
}

interface OutOpts {
  excludePorts?: number[];
  uid?: number;
  gid?: number;
  v6?: boolean;
  loopbackReturn?: boolean;
  tail?: string[];
}
function output(o: OutOpts = {}): string[] {
  const lo = o.v6 ? '::1/128' : '127.0.0.1/32';
  return [
    ...outPortRet(o.excludePorts ?? [15020]),
    `-A ISTIO_OUTPUT -s ${o.v6 ? '::6/128' : '127.0.0.6/32'} -o lo -j RETURN`,
    ...owner('uid', o.uid ?? 1337, lo, o.loopbackReturn),
    ...owner('gid', o.gid ?? 1337, lo, o.loopbackReturn),
    `-A ISTIO_OUTPUT -d ${lo} -j RETURN`,
    ...(o.tail ?? ['-A ISTIO_OUTPUT -j ISTIO_REDIRECT']),
  ];
}

const pre = ['-A PREROUTING -p tcp -j ISTIO_INBOUND'];
const out = ['-A OUTPUT -p tcp -j ISTIO_OUTPUT'];
const nat = (rules: {
  pre?: string[];
  out?: string[];
  inbound?: string[] | null;
  output?: string[];
  chains?: string[];
}): string =>
  table('nat', rules.chains ?? CH, [
    ...(rules.pre ?? (rules.inbound === null ? [] : pre)),
    ...(rules.out ?? out),
    // Istio 1.17.8 writes the tunnel-port rule in nat even when nothing jumps to ISTIO_INBOUND.
    ...(rules.inbound === null ? inRet([15008]) : (rules.inbound ?? DEFAULT_IN)),
    ...REDIRECTS,
    ...(rules.output ?? output()),
  ]);

const TPROXY_MANGLE = (o: { v6?: boolean; inbound?: string[] } = {}): string => {
  const lo = o.v6 ? '::1/128' : '127.0.0.1/32';
  return table(
    'mangle',
    ['ISTIO_DIVERT', 'ISTIO_TPROXY', 'ISTIO_INBOUND'],
    [
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A PREROUTING -p tcp -m mark --mark 0x539 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff',
      '-A OUTPUT -o lo -p tcp -m mark --mark 0x539 -j RETURN',
      `-A OUTPUT ! -d ${lo} -o lo -p tcp -m owner --uid-owner 1337 -j MARK --set-xmark 0x53a/0xffffffff`,
      `-A OUTPUT ! -d ${lo} -o lo -p tcp -m owner --gid-owner 1337 -j MARK --set-xmark 0x53a/0xffffffff`,
      '-A OUTPUT -p tcp -m connmark --mark 0x539 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff',
      '-A ISTIO_DIVERT -j MARK --set-xmark 0x539/0xffffffff',
      '-A ISTIO_DIVERT -j ACCEPT',
      `-A ISTIO_TPROXY ! -d ${lo} -p tcp -j TPROXY --on-port 15006 --on-ip ${o.v6 ? '::' : '0.0.0.0'} --tproxy-mark 0x539/0xffffffff`,
      '-A ISTIO_INBOUND -p tcp -m mark --mark 0x539 -j RETURN',
      `-A ISTIO_INBOUND -s ${o.v6 ? '::6/128' : '127.0.0.6/32'} -i lo -p tcp -j RETURN`,
      '-A ISTIO_INBOUND -i lo -p tcp -m mark ! --mark 0x53a -j RETURN',
      ...(o.inbound ?? [
        ...inRet([15020, 15021, 15090]),
        '-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
        '-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY',
      ]),
    ],
  );
};

// DNS capture as the CNI plug-in of 1.17.8 writes it (capture all DNS): UDP in nat OUTPUT itself.
const DNS_OUTPUT = (o: { excludePorts?: number[] } = {}): string[] => [
  ...outPortRet(o.excludePorts ?? [15020]),
  '-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN',
  '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 53 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT',
  '-A ISTIO_OUTPUT -o lo -p tcp -m tcp ! --dport 53 -m owner ! --uid-owner 1337 -j RETURN',
  '-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
  '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT',
  '-A ISTIO_OUTPUT -o lo -p tcp -m tcp ! --dport 53 -m owner ! --gid-owner 1337 -j RETURN',
  '-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN',
  '-A ISTIO_OUTPUT -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 15053',
  '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
  '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
];
const DNS_OUT = [
  '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
  '-A OUTPUT -p udp -m udp --dport 53 -m owner --uid-owner 1337 -j RETURN',
  '-A OUTPUT -p udp -m udp --dport 53 -m owner --gid-owner 1337 -j RETURN',
  '-A OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053',
];
const DNS_RAW = table(
  'raw',
  [],
  [
    '-A PREROUTING -p udp -m udp --sport 53 -j CT --zone 1',
    '-A OUTPUT -p udp -m udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1',
    '-A OUTPUT -p udp -m udp --sport 15053 -m owner --uid-owner 1337 -j CT --zone 2',
    '-A OUTPUT -p udp -m udp --dport 53 -m owner --gid-owner 1337 -j CT --zone 1',
    '-A OUTPUT -p udp -m udp --sport 15053 -m owner --gid-owner 1337 -j CT --zone 2',
    '-A OUTPUT -p udp -m udp --dport 53 -j CT --zone 2',
  ],
);

const A = 'traffic.sidecar.istio.io/';
const proxy = (over: { runAsUser?: number; runAsGroup?: number; env?: Record<string, string> } = {}) => ({
  name: 'istio-proxy',
  runAsUser: 1337,
  ...over,
});
const app = { name: 'app' };
const DUAL = [app, proxy({ env: { ISTIO_DUAL_STACK: 'true' } })];

export const GOLDEN: GoldenCase[] = [
  { name: 'default sidecar pod', v4: nat({}) },
  {
    name: 'documented pod: excludeInboundPorts 22, excludeOutboundIPRanges 192.168.0.1/32',
    annotations: { [`${A}excludeInboundPorts`]: '22', [`${A}excludeOutboundIPRanges`]: '192.168.0.1/32' },
    v4: nat({
      inbound: [...inRet([15008, 22, 15020, 15021, 15090]), '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT'],
      output: output({ tail: ['-A ISTIO_OUTPUT -d 192.168.0.1/32 -j RETURN', '-A ISTIO_OUTPUT -j ISTIO_REDIRECT'] }),
    }),
  },
  { name: 'includeInboundPorts "*" is the default', annotations: { [`${A}includeInboundPorts`]: '*' }, v4: nat({}) },
  {
    name: 'includeInboundPorts lists ports to capture',
    annotations: { [`${A}includeInboundPorts`]: '80, 8080' },
    v4: nat({
      inbound: [
        ...inRet([15008]),
        '-A ISTIO_INBOUND -p tcp -m tcp --dport 80 -j ISTIO_IN_REDIRECT',
        '-A ISTIO_INBOUND -p tcp -m tcp --dport 8080 -j ISTIO_IN_REDIRECT',
      ],
    }),
  },
  {
    name: 'empty includeInboundPorts captures no inbound traffic',
    annotations: { [`${A}includeInboundPorts`]: '' },
    v4: nat({ inbound: null }),
  },
  {
    name: 'excludeInboundPorts 15020 is not duplicated',
    annotations: { [`${A}excludeInboundPorts`]: '15020,15021' },
    v4: nat({}),
  },
  {
    name: 'empty excludeInboundPorts still excludes the well-known ports',
    annotations: { [`${A}excludeInboundPorts`]: '' },
    v4: nat({ inbound: [...inRet([15008, 15020, 15021, 15090]), '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT'] }),
  },
  {
    name: 'includeOutboundIPRanges lists CIDRs to capture',
    annotations: { [`${A}includeOutboundIPRanges`]: '10.0.0.0/8,172.16.0.0/12' },
    v4: nat({
      output: output({
        tail: [
          '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT',
          '-A ISTIO_OUTPUT -d 172.16.0.0/12 -j ISTIO_REDIRECT',
          '-A ISTIO_OUTPUT -j RETURN',
        ],
      }),
    }),
  },
  {
    name: 'empty includeOutboundIPRanges redirects nothing outbound',
    annotations: { [`${A}includeOutboundIPRanges`]: '' },
    v4: nat({ output: output({ tail: [] }) }),
  },
  {
    name: 'an included loopback range keeps app-to-app loopback traffic captured',
    annotations: { [`${A}includeOutboundIPRanges`]: '127.0.0.0/8' },
    v4: nat({
      output: output({
        loopbackReturn: false,
        tail: ['-A ISTIO_OUTPUT -d 127.0.0.0/8 -j ISTIO_REDIRECT', '-A ISTIO_OUTPUT -j RETURN'],
      }),
    }),
  },
  {
    name: 'excludeOutboundIPRanges, host bits normalised',
    annotations: { [`${A}excludeOutboundIPRanges`]: '10.96.0.1/12,192.168.0.0/16' },
    v4: nat({
      output: output({
        tail: [
          '-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN',
          '-A ISTIO_OUTPUT -d 192.168.0.0/16 -j RETURN',
          '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
        ],
      }),
    }),
  },
  {
    name: 'includeOutboundPorts redirect before the CIDR rules',
    annotations: { [`${A}includeOutboundPorts`]: '3306', [`${A}includeOutboundIPRanges`]: '' },
    v4: nat({ output: output({ tail: ['-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j ISTIO_REDIRECT'] }) }),
  },
  {
    name: 'excludeOutboundPorts replaces the default',
    annotations: { [`${A}excludeOutboundPorts`]: '9090,9091' },
    v4: nat({ output: output({ excludePorts: [9090, 9091] }) }),
  },
  {
    name: 'empty excludeOutboundPorts excludes nothing',
    annotations: { [`${A}excludeOutboundPorts`]: '' },
    v4: nat({ output: output({ excludePorts: [] }) }),
  },
  {
    name: 'excludeInterfaces bypass capture first',
    annotations: { [`${A}excludeInterfaces`]: 'eth1' },
    v4: nat({ pre: ['-A PREROUTING -i eth1 -j RETURN', ...pre], out: ['-A OUTPUT -o eth1 -j RETURN', ...out] }),
  },
  {
    name: 'reroute-virtual-interfaces go to the top of PREROUTING',
    annotations: { 'istio.io/reroute-virtual-interfaces': 'k6t-eth0' },
    v4: nat({ pre: ['-A PREROUTING -i k6t-eth0 -j ISTIO_REDIRECT', '-A PREROUTING -i k6t-eth0 -j RETURN', ...pre] }),
  },
  {
    name: 'deprecated kubevirtInterfaces, each inserted at the top',
    annotations: { [`${A}kubevirtInterfaces`]: 'net1,net2' },
    v4: nat({
      pre: [
        '-A PREROUTING -i net2 -j ISTIO_REDIRECT',
        '-A PREROUTING -i net1 -j ISTIO_REDIRECT',
        '-A PREROUTING -i net2 -j RETURN',
        '-A PREROUTING -i net1 -j RETURN',
        ...pre,
      ],
    }),
  },
  {
    name: 'reroute-virtual-interfaces wins over kubevirtInterfaces',
    annotations: { 'istio.io/reroute-virtual-interfaces': 'vnet0', [`${A}kubevirtInterfaces`]: 'net1' },
    v4: nat({ pre: ['-A PREROUTING -i vnet0 -j ISTIO_REDIRECT', '-A PREROUTING -i vnet0 -j RETURN', ...pre] }),
  },
  {
    name: "proxy uid and gid come from the istio-proxy container's securityContext",
    containers: [app, proxy({ runAsUser: 1500, runAsGroup: 1600 })],
    v4: nat({ output: output({ uid: 1500, gid: 1600 }) }),
  },
  { name: 'runAsUser 0 falls back to 1337', containers: [app, proxy({ runAsUser: 0 })], v4: nat({}) },
  {
    name: 'TPROXY moves inbound capture to mangle',
    annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY' },
    v4: TPROXY_MANGLE() + nat({ inbound: null }),
  },
  {
    name: 'TPROXY with a list of inbound ports',
    annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY', [`${A}includeInboundPorts`]: '80' },
    v4:
      TPROXY_MANGLE({
        inbound: [
          '-A ISTIO_INBOUND -p tcp -m tcp --dport 80 -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
          '-A ISTIO_INBOUND -p tcp -m tcp --dport 80 -j ISTIO_TPROXY',
        ],
      }) + nat({ inbound: null }),
  },
  {
    name: 'DNS capture: TCP and UDP port 53 go to the agent, conntrack zones in raw',
    containers: [app, proxy({ env: { ISTIO_META_DNS_CAPTURE: 'true' } })],
    v4: DNS_RAW + nat({ out: DNS_OUT, output: DNS_OUTPUT() }),
  },
  {
    name: 'DNS capture excludes outbound ports for TCP only',
    containers: [app, proxy({ env: { ISTIO_META_DNS_CAPTURE: 'true' } })],
    annotations: { [`${A}excludeOutboundPorts`]: '9090' },
    v4: DNS_RAW + nat({ out: DNS_OUT, output: DNS_OUTPUT({ excludePorts: [9090] }) }),
  },
  {
    name: 'ISTIO_META_DNS_CAPTURE=false is off',
    containers: [app, proxy({ env: { ISTIO_META_DNS_CAPTURE: 'false' } })],
    v4: nat({}),
  },
  {
    name: 'dual stack writes the same rules for IPv6 with ::1 and ::6',
    containers: DUAL,
    v4: nat({}),
    v6: nat({ output: output({ v6: true }) }),
  },
  {
    name: 'dual stack splits CIDR lists by family',
    containers: DUAL,
    annotations: {
      [`${A}excludeOutboundIPRanges`]: '10.0.0.0/8,fd00::/8',
      [`${A}includeOutboundIPRanges`]: '192.168.0.0/16,2001:db8::/32',
    },
    v4: nat({
      output: output({
        tail: [
          '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN',
          '-A ISTIO_OUTPUT -d 192.168.0.0/16 -j ISTIO_REDIRECT',
          '-A ISTIO_OUTPUT -j RETURN',
        ],
      }),
    }),
    v6: nat({
      output: output({
        v6: true,
        tail: [
          '-A ISTIO_OUTPUT -d fd00::/8 -j RETURN',
          '-A ISTIO_OUTPUT -d 2001:db8::/32 -j ISTIO_REDIRECT',
          '-A ISTIO_OUTPUT -j RETURN',
        ],
      }),
    }),
  },
  {
    name: 'dual stack TPROXY',
    containers: DUAL,
    annotations: { 'sidecar.istio.io/interceptionMode': 'TPROXY' },
    v4: TPROXY_MANGLE() + nat({ inbound: null }),
    v6: TPROXY_MANGLE({ v6: true }) + nat({ inbound: null, output: output({ v6: true }) }),
  },
  {
    name: 'INVALID_DROP drops invalid conntrack packets in mangle',
    containers: [app, proxy({ env: { INVALID_DROP: 'true' } })],
    v4: table('mangle', [], ['-A PREROUTING -m conntrack --ctstate INVALID -j DROP']) + nat({}),
  },
  {
    name: 'sidecar.istio.io/inject "false" is skipped',
    annotations: { 'sidecar.istio.io/inject': 'false' },
    skip: /sidecar\.istio\.io\/inject is "false"/,
  },
  {
    name: 'sidecar.istio.io/inject "true" is captured',
    annotations: { 'sidecar.istio.io/inject': 'true' },
    v4: nat({}),
  },
  { name: 'an excluded namespace is skipped', namespace: 'kube-system', skip: /namespace kube-system is excluded/ },
  {
    name: 'a pod without istio-proxy is skipped',
    containers: [app, { name: 'sidecar' }],
    skip: /no container named istio-proxy/,
  },
  { name: 'a pod with only istio-proxy is skipped', containers: [proxy()], skip: /only 1 container/ },
  {
    name: 'a bad port names the annotation and value',
    annotations: { [`${A}excludeInboundPorts`]: '22,abc' },
    error: /traffic\.sidecar\.istio\.io\/excludeInboundPorts="abc": not a port/,
  },
  {
    name: 'a port above 65535 is rejected',
    annotations: { [`${A}includeOutboundPorts`]: '70000' },
    error: /includeOutboundPorts="70000": not a port/,
  },
  {
    name: 'a bad CIDR is rejected',
    annotations: { [`${A}excludeOutboundIPRanges`]: '10.0.0.0/33' },
    error: /excludeOutboundIPRanges="10\.0\.0\.0\/33": not a CIDR/,
  },
  {
    name: 'a CIDR without prefix length is rejected',
    annotations: { [`${A}includeOutboundIPRanges`]: '10.1.2.3' },
    error: /includeOutboundIPRanges="10\.1\.2\.3": not a CIDR/,
  },
  {
    name: '"*" is not allowed in excludeOutboundIPRanges',
    annotations: { [`${A}excludeOutboundIPRanges`]: '*' },
    error: /excludeOutboundIPRanges="\*": "\*" is not allowed/,
  },
  {
    name: 'an unknown interception mode is rejected',
    annotations: { 'sidecar.istio.io/interceptionMode': 'NONE' },
    error: /interceptionMode="NONE": must be REDIRECT or TPROXY/,
  },
  {
    name: 'a bad interface name is rejected',
    annotations: { [`${A}excludeInterfaces`]: 'eth0/1' },
    error: /excludeInterfaces="eth0\/1": not an interface name/,
  },
  {
    name: 'a non-boolean DNS capture env is rejected',
    containers: [app, proxy({ env: { ISTIO_META_DNS_CAPTURE: 'yes' } })],
    error: /ISTIO_META_DNS_CAPTURE of istio-proxy="yes": must be true or false/,
  },
];

/** A Pod object for a case, shaped as `kubectl get pod -o json` prints it. */
export function podObject(c: Partial<GoldenCase>): Record<string, unknown> {
  const list: NonNullable<GoldenCase['containers']> = c.containers ?? [app, proxy()];
  const containers = list.map((x) => ({
    name: x.name,
    image: `example/${x.name}`,
    ...(x.runAsUser !== undefined || x.runAsGroup !== undefined
      ? {
          securityContext: {
            ...(x.runAsUser !== undefined ? { runAsUser: x.runAsUser } : {}),
            ...(x.runAsGroup !== undefined ? { runAsGroup: x.runAsGroup } : {}),
          },
        }
      : {}),
    ...(x.env ? { env: Object.entries(x.env).map(([name, value]) => ({ name, value })) } : {}),
  }));
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'p',
      namespace: c.namespace ?? 'shop',
      uid: '1b9f7a0e-0000-4000-8000-000000000001',
      annotations: c.annotations ?? {},
    },
    spec: { containers },
  };
}
