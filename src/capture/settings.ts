// Redirect settings exactly as Istio derives them from a pod: annotations, the istio-proxy
// container's uid/gid and env, Istio's defaults and well-known port exclusions. Pure; every bad
// value is a CaptureError naming the annotation (or env var) and the value.
import { parsePrefix, formatPrefix } from '../nft/addr.js';
import type { CaptureConfig } from './config.js';
import { PROXY_CONTAINER } from './decision.js';
import { CaptureError } from './errors.js';
import type { PodView } from './pod.js';

export type InterceptionMode = 'REDIRECT' | 'TPROXY';

/** `*`, or an explicit (possibly empty) list. */
export type PortSelection = { all: true } | { all: false; ports: number[] };
export type CidrSelection = { all: true } | { all: false; cidrs: string[] };

export interface RedirectSettings {
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
  excludeOutboundCidrs: string[];
  includeOutboundPorts: number[];
  excludeOutboundPorts: number[];
  excludeInterfaces: string[];
  rerouteInterfaces: string[];
  dnsCapture: boolean;
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

const splitList = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

function parsePort(setting: string, raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) throw new CaptureError(setting, raw, 'not a port (an integer from 0 to 65535)');
  return Number(raw);
}

const dedupe = <T>(xs: T[]): T[] => [...new Set(xs)];

function portList(setting: string, value: string): number[] {
  return dedupe(splitList(value).map((p) => parsePort(setting, p)));
}

function portSelection(setting: string, value: string): PortSelection {
  if (value.trim() === '*') return { all: true };
  return { all: false, ports: portList(setting, value) };
}

function cidr(setting: string, raw: string): string {
  if (!raw.includes('/')) throw new CaptureError(setting, raw, 'not a CIDR (an IPv4 or IPv6 prefix such as 10.0.0.0/8)');
  try {
    return formatPrefix(parsePrefix(raw));
  } catch (e) {
    throw new CaptureError(setting, raw, `not a CIDR: ${(e as Error).message}`);
  }
}

function cidrSelection(setting: string, value: string, wildcardAllowed: boolean): CidrSelection {
  const items = splitList(value);
  if (items.includes('*')) {
    if (!wildcardAllowed) throw new CaptureError(setting, value, '"*" is not allowed here');
    if (items.length > 1) throw new CaptureError(setting, value, '"*" cannot be combined with other ranges');
    return { all: true };
  }
  return { all: false, cidrs: dedupe(items.map((c) => cidr(setting, c))) };
}

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;
function interfaces(setting: string, value: string): string[] {
  const names = splitList(value);
  for (const n of names) if (!IFNAME.test(n)) throw new CaptureError(setting, n, 'not an interface name (1–15 characters, no spaces or slashes)');
  return dedupe(names);
}

/** Go's strconv.ParseBool, which Istio uses for these env vars. */
function envBool(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw new CaptureError(`env ${name} of ${PROXY_CONTAINER}`, value, 'must be true or false');
}

export function redirectSettings(pod: PodView, config: CaptureConfig): RedirectSettings {
  const ann = (key: string): string | undefined => pod.annotations.get(key);
  const proxy = pod.containers.find((c) => c.name === PROXY_CONTAINER);
  const env = proxy?.env ?? new Map<string, string>();

  const modeRaw = ann(ANNOTATIONS.mode) ?? 'REDIRECT';
  if (modeRaw !== 'REDIRECT' && modeRaw !== 'TPROXY') throw new CaptureError(ANNOTATIONS.mode, modeRaw, 'must be REDIRECT or TPROXY');

  const excludeInbound = portList(ANNOTATIONS.excludeInboundPorts, ann(ANNOTATIONS.excludeInboundPorts) ?? '15020');
  const reroute = ann(ANNOTATIONS.rerouteVirtualInterfaces);
  const rerouteKey = reroute !== undefined ? ANNOTATIONS.rerouteVirtualInterfaces : ANNOTATIONS.kubevirtInterfaces;

  return {
    mode: modeRaw,
    proxyUid: proxy?.runAsUser ? proxy.runAsUser : DEFAULT_PROXY_ID,
    proxyGid: proxy?.runAsGroup ? proxy.runAsGroup : DEFAULT_PROXY_ID,
    proxyPort: 15001,
    inboundCapturePort: 15006,
    inboundTunnelPort: 15008,
    dnsPort: 15053,
    includeInboundPorts: portSelection(ANNOTATIONS.includeInboundPorts, ann(ANNOTATIONS.includeInboundPorts) ?? '*'),
    excludeInboundPorts: dedupe([...excludeInbound, ...ALWAYS_EXCLUDED_INBOUND]),
    includeOutboundCidrs: cidrSelection(ANNOTATIONS.includeOutboundIPRanges, ann(ANNOTATIONS.includeOutboundIPRanges) ?? '*', true),
    excludeOutboundCidrs: (cidrSelection(ANNOTATIONS.excludeOutboundIPRanges, ann(ANNOTATIONS.excludeOutboundIPRanges) ?? '', false) as { cidrs: string[] }).cidrs,
    includeOutboundPorts: portList(ANNOTATIONS.includeOutboundPorts, ann(ANNOTATIONS.includeOutboundPorts) ?? ''),
    excludeOutboundPorts: portList(ANNOTATIONS.excludeOutboundPorts, ann(ANNOTATIONS.excludeOutboundPorts) ?? '15020'),
    excludeInterfaces: interfaces(ANNOTATIONS.excludeInterfaces, ann(ANNOTATIONS.excludeInterfaces) ?? ''),
    rerouteInterfaces: interfaces(rerouteKey, ann(rerouteKey) ?? ''),
    dnsCapture: envBool('ISTIO_META_DNS_CAPTURE', env.get('ISTIO_META_DNS_CAPTURE')) ?? false,
    dualStack: envBool('ISTIO_DUAL_STACK', env.get('ISTIO_DUAL_STACK')) ?? config.dualStack,
    dropInvalid: envBool('INVALID_DROP', env.get('INVALID_DROP')) ?? false,
    tproxyMark: 1337,
    tproxyTable: 133,
    outboundMark: 1338,
  };
}
