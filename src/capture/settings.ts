// Redirect settings exactly as Istio derives them from a pod: annotations, the istio-proxy
// container's uid/gid and env, Istio's defaults and well-known port exclusions. Pure; every bad
// value is a CaptureError naming the annotation (or env var) and the value.
import { parsePrefix, formatPrefix } from '../nft/addr.js';
import type { CaptureConfig, IstioVersionSetting } from './config.js';
import { globalAddressFamilies, parseGoBool, PROXY_CONTAINER, proxyContainer, type PodView } from './pod.js';
import { CaptureError } from './errors.js';

export type InterceptionMode = 'REDIRECT' | 'TPROXY';

/** `*`, or an explicit (possibly empty) list. */
export type PortSelection = { all: true } | { all: false; ports: number[] };
export type CidrSelection = { all: true } | { all: false; cidrs: string[] };

/** Whose rules: Istio 1.17.8's or 1.30.3's run.go. */
export type IstioRules = '1.17' | '1.30';

export interface RedirectSettings {
  /** The Istio release whose rule set is written (config `istioVersion`, per pod for `auto`). */
  istioRules: IstioRules;
  mode: InterceptionMode;
  proxyUid: number;
  proxyGid: number;
  /** Outbound capture port (Envoy's virtualOutbound). */
  proxyPort: number;
  /** Inbound capture port (Envoy's virtualInbound). */
  inboundCapturePort: number;
  /** HBONE tunnel port, always excluded inbound. */
  inboundTunnelPort: number;
  /** Agent DNS listener. */
  dnsPort: number;
  includeInboundPorts: PortSelection;
  excludeInboundPorts: number[];
  includeOutboundCidrs: CidrSelection;
  /** Some include CIDR's address is a loopback address (Istio's HasLoopBackIP, either family). */
  includeOutboundLoopback: boolean;
  excludeOutboundCidrs: string[];
  includeOutboundPorts: number[];
  excludeOutboundPorts: number[];
  excludeInterfaces: string[];
  rerouteInterfaces: string[];
  dnsCapture: boolean;
  /** IPv6 rules beside the IPv4 ones (Istio's EnableIPv6; see ipv6Rules). */
  dualStack: boolean;
  dropInvalid: boolean;
  /** TPROXY: the mark that routes to the proxy, the policy-routing table, the outbound mark. */
  tproxyMark: number;
  tproxyTable: number;
  outboundMark: number;
}

export const ANNOTATIONS = {
  mode: 'sidecar.istio.io/interceptionMode',
  includeInboundPorts: 'traffic.sidecar.istio.io/includeInboundPorts',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  includeOutboundIPRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeOutboundIPRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  includeOutboundPorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  excludeInterfaces: 'traffic.sidecar.istio.io/excludeInterfaces',
  rerouteVirtualInterfaces: 'istio.io/reroute-virtual-interfaces',
  kubevirtInterfaces: 'traffic.sidecar.istio.io/kubevirtInterfaces',
} as const;

export const DEFAULT_PROXY_ID = 1337;
/** Always excluded inbound after the pod's own list: agent status, health, Envoy Prometheus. */
const ALWAYS_EXCLUDED_INBOUND = [15020, 15021, 15090];

/**
 * Most entries one list-valued annotation (ports, CIDRs, interfaces) may hold. Istio accepts what fits
 * in an annotation (256 KiB in total); 16,384 covers that for ports and typical CIDRs, keeps one
 * pod's plan bounded, and a longer list fails the pod's ADD instead of slowing the agent down.
 */
export const MAX_LIST_ENTRIES = 16384;

/**
 * Splits a comma-separated list the way Istio 1.17.8's redirect.go validates it: an empty (or blank)
 * value is the empty list, but an empty entry inside a list ("80,,90", "10.0.0.0/8,") is an error.
 */
function splitList(setting: string, value: string): string[] {
  if (value.trim() === '') return [];
  let count = 1;
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) === 44 /* , */) count++;
  if (count > MAX_LIST_ENTRIES)
    throw new CaptureError(
      setting,
      `(${count} entries)`,
      `a list holds at most ${MAX_LIST_ENTRIES} entries, this one has ${count}`,
    );
  const items = value.split(',');
  items.forEach((item, i) => {
    if (item.trim() === '')
      throw new CaptureError(
        setting,
        value.length > 200 ? `${value.slice(0, 200)}…` : value,
        `entry ${i + 1} of the list is empty`,
      );
  });
  return items;
}

function parsePort(setting: string, raw: string): number {
  // Istio parses each entry with surrounding blanks trimmed (strconv.ParseUint(strings.TrimSpace(p))).
  const p = raw.trim();
  if (!/^\d{1,5}$/.test(p) || Number(p) > 65535)
    throw new CaptureError(setting, raw, 'not a port (an integer from 0 to 65535)');
  return Number(p);
}

/** Ports in the order given; duplicates stay (Istio writes one rule per entry). */
function portList(setting: string, value: string): number[] {
  return splitList(setting, value.trim()).map((p) => parsePort(setting, p));
}

function portSelection(setting: string, value: string): PortSelection {
  if (value === '*') return { all: true };
  return { all: false, ports: portList(setting, value) };
}

/** Istio 1.17.8 parses CIDR entries with netip.ParsePrefix, untrimmed: " 10.0.0.0/8" is rejected. */
function cidr(setting: string, raw: string): string {
  if (raw !== raw.trim())
    throw new CaptureError(setting, raw, 'not a CIDR: blanks around an entry are not allowed (Istio rejects them too)');
  if (raw === '*') throw new CaptureError(setting, raw, '"*" is not allowed here');
  if (!raw.includes('/'))
    throw new CaptureError(setting, raw, 'not a CIDR (an IPv4 or IPv6 prefix such as 10.0.0.0/8)');
  try {
    return formatPrefix(parsePrefix(raw));
  } catch (e) {
    throw new CaptureError(setting, raw, `not a CIDR: ${(e as Error).message}`);
  }
}

/**
 * Whether the address of a prefix as written (before masking) is a loopback address: Go's netip
 * Addr.IsLoopback. The Go Istio 1.30.3 is built with also unmaps IPv4-mapped addresses
 * (::ffff:127.0.0.1); the one 1.17.8 was built with did not (`unmapped`).
 */
function isLoopbackAddress(raw: string, unmapped: boolean): boolean {
  const addr = raw.slice(0, raw.indexOf('/'));
  if (!addr.includes(':')) return addr.split('.')[0] === '127';
  const b = parsePrefix(`${addr}/128`).addr;
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (mapped) return unmapped && b[12] === 127;
  return b.every((x, i) => x === (i === 15 ? 1 : 0));
}

function cidrList(setting: string, value: string, unmapped = false): { cidrs: string[]; loopback: boolean } {
  const items = splitList(setting, value);
  return { cidrs: items.map((c) => cidr(setting, c)), loopback: items.some((c) => isLoopbackAddress(c, unmapped)) };
}

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;
function interfaces(setting: string, value: string): string[] {
  const names = splitList(setting, value).map((n) => n.trim());
  for (const n of names)
    if (!IFNAME.test(n))
      throw new CaptureError(setting, n, 'not an interface name (1–15 characters, no spaces or slashes)');
  return names;
}

/** A boolean env var of the proxy, read as Istio does (parseGoBool); anything else is refused. */
function envBool(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const b = parseGoBool(value);
  if (b !== undefined) return b;
  throw new CaptureError(`env ${name} of ${PROXY_CONTAINER}`, value, 'must be true or false');
}

/**
 * Istio releases whose CNI rules are 1.30.3's: from 1.25.0 on, run.go's rule calls are unchanged and
 * every golden the releases share is byte-identical at every patch tag (cni/pkg/plugin and
 * istio-iptables; istio-nftables' from 1.28.1 on). Earlier releases from 1.18 on write neither set.
 */
const RULES_1_30_MINORS = { first: 25, last: 30 };

/**
 * `auto`: the rule set of the release in the proxy image's tag (`…/proxyv2:1.30.3`, `:1.27.2-distroless`):
 * 1.17.x → 1.17, 1.25.x–1.30.x → 1.30; any other release, a digest or no tag → 1.17, the default.
 */
export function istioRulesFor(version: IstioVersionSetting, image: string | undefined): IstioRules {
  if (version !== 'auto') return version;
  const name = (image ?? '').split('@')[0]!;
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  const tag = colon > slash ? name.slice(colon + 1) : '';
  const m = /^1\.([1-9]\d*)\.(?:0|[1-9]\d*)(?:-[A-Za-z0-9.-]+)?$/.exec(tag);
  const minor = m ? Number(m[1]) : NaN;
  return minor >= RULES_1_30_MINORS.first && minor <= RULES_1_30_MINORS.last ? '1.30' : '1.17';
}

/**
 * Whether IPv6 rules are written. 1.17.8 has no dual stack: meshcni's documented ISTIO_DUAL_STACK
 * (else the config's dualStack). 1.30.3 decides as its getLocalIP does from the pod's addresses:
 * single stack, the family of the first; dual stack, whether any is IPv6. Without known addresses
 * (a manifest with no status, a runtime result with no IPs) the flag alone decides.
 */
function ipv6Rules(rules: IstioRules, dualStack: boolean, ips: readonly string[] | undefined): boolean {
  const families = rules === '1.30' && ips ? globalAddressFamilies(ips) : [];
  if (families.length === 0) return dualStack;
  return dualStack ? families.includes(6) : families[0] === 6;
}

export function redirectSettings(pod: PodView, config: CaptureConfig): RedirectSettings {
  const ann = (key: string): string | undefined => pod.annotations.get(key);
  const proxy = proxyContainer(pod);
  const env = proxy?.env ?? new Map<string, string>();

  const modeRaw = ann(ANNOTATIONS.mode) ?? 'REDIRECT';
  if (modeRaw !== 'REDIRECT' && modeRaw !== 'TPROXY')
    throw new CaptureError(ANNOTATIONS.mode, modeRaw, 'must be REDIRECT or TPROXY');

  const excludeInbound = portList(ANNOTATIONS.excludeInboundPorts, ann(ANNOTATIONS.excludeInboundPorts) ?? '15020');
  const reroute = ann(ANNOTATIONS.rerouteVirtualInterfaces);
  const rerouteKey = reroute !== undefined ? ANNOTATIONS.rerouteVirtualInterfaces : ANNOTATIONS.kubevirtInterfaces;
  const includeRaw = ann(ANNOTATIONS.includeOutboundIPRanges) ?? '*';
  const istioRules = istioRulesFor(config.istioVersion, proxy?.image);
  const include =
    includeRaw === '*' ? null : cidrList(ANNOTATIONS.includeOutboundIPRanges, includeRaw, istioRules === '1.30');
  const rerouteInterfaces = interfaces(rerouteKey, ann(rerouteKey) ?? '');
  // Istio writes one PREROUTING rule per (interface, include CIDR) pair: bound the product too.
  const pairs = rerouteInterfaces.length * (include?.cidrs.length ?? 1);
  if (pairs > MAX_LIST_ENTRIES) {
    throw new CaptureError(
      `${rerouteKey} × ${ANNOTATIONS.includeOutboundIPRanges}`,
      `(${pairs} pairs)`,
      `at most ${MAX_LIST_ENTRIES} interface × CIDR pairs, each is one rule`,
    );
  }

  return {
    istioRules,
    mode: modeRaw,
    proxyUid: proxy?.runAsUser ? proxy.runAsUser : DEFAULT_PROXY_ID,
    proxyGid: proxy?.runAsGroup ? proxy.runAsGroup : DEFAULT_PROXY_ID,
    proxyPort: 15001,
    inboundCapturePort: 15006,
    inboundTunnelPort: 15008,
    dnsPort: 15053,
    includeInboundPorts: portSelection(ANNOTATIONS.includeInboundPorts, ann(ANNOTATIONS.includeInboundPorts) ?? '*'),
    // Istio appends the well-known ports and removes repeats, first occurrence kept.
    excludeInboundPorts: [...new Set([...excludeInbound, ...ALWAYS_EXCLUDED_INBOUND])],
    includeOutboundCidrs: include ? { all: false, cidrs: include.cidrs } : { all: true },
    includeOutboundLoopback: include?.loopback ?? false,
    excludeOutboundCidrs: cidrList(ANNOTATIONS.excludeOutboundIPRanges, ann(ANNOTATIONS.excludeOutboundIPRanges) ?? '')
      .cidrs,
    includeOutboundPorts: portList(ANNOTATIONS.includeOutboundPorts, ann(ANNOTATIONS.includeOutboundPorts) ?? ''),
    excludeOutboundPorts: portList(ANNOTATIONS.excludeOutboundPorts, ann(ANNOTATIONS.excludeOutboundPorts) ?? '15020'),
    excludeInterfaces: interfaces(ANNOTATIONS.excludeInterfaces, ann(ANNOTATIONS.excludeInterfaces) ?? ''),
    rerouteInterfaces,
    dnsCapture: envBool('ISTIO_META_DNS_CAPTURE', env.get('ISTIO_META_DNS_CAPTURE')) ?? false,
    dualStack: ipv6Rules(
      istioRules,
      envBool('ISTIO_DUAL_STACK', env.get('ISTIO_DUAL_STACK')) ?? config.dualStack,
      pod.podIps,
    ),
    dropInvalid: envBool('INVALID_DROP', env.get('INVALID_DROP')) ?? false,
    tproxyMark: 1337,
    tproxyTable: 133,
    outboundMark: 1338,
  };
}
