// The parts of a Kubernetes Pod the capture engine reads, validated out of a plain object (as the
// API server or `kubectl get pod -o yaml` gives it) or out of YAML/JSON text.
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { CaptureError } from './errors.js';

/** The sidecar's name, as a container or (native sidecar, Kubernetes 1.28+) as an init container. */
export const PROXY_CONTAINER = 'istio-proxy';
/** The label (and, older, the annotation) that turns injection off; the label wins when both are set. */
export const INJECT_KEY = 'sidecar.istio.io/inject';

export interface ContainerView {
  name: string;
  env: Map<string, string>;
  runAsUser?: number;
  runAsGroup?: number;
  /** The proxy's only: its args (`proxy sidecar`, `proxy router`) and image. */
  args?: string[];
  image?: string;
}

export interface PodView {
  name: string;
  namespace: string;
  uid?: string;
  annotations: Map<string, string>;
  /** Only the inject label is read; other labels are the API server's business. */
  injectLabel?: string;
  hostNetwork: boolean;
  initContainers: ContainerView[];
  containers: ContainerView[];
  /** The pod's IPs (`status.podIPs`, else `status.podIP`), in order; absent when the object has none. */
  podIps?: string[];
}

/** Go's strconv.ParseBool, as Istio reads the proxy's env and the inject label; undefined when neither. */
export function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

/**
 * The sidecar: the container named istio-proxy, else the init container of that name (a native
 * sidecar). Istio's plug-in reads init containers first and containers after, so a container wins.
 */
export function proxyContainer(pod: PodView): ContainerView | undefined {
  return (
    pod.containers.find((c) => c.name === PROXY_CONTAINER) ?? pod.initContainers.find((c) => c.name === PROXY_CONTAINER)
  );
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Largest valid uid/gid: 4294967295 is (uid_t)-1, "no id", and the kernel rejects it (EINVAL). */
export const MAX_ID = 4294967294;

function optionalId(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_ID)
    throw new CaptureError(what, v, `must be an integer id from 0 to ${MAX_ID}`);
  return v;
}

function container(list: string, c: unknown, i: number): ContainerView {
  if (!isObject(c) || typeof c.name !== 'string' || c.name === '')
    throw new CaptureError(`${list}[${i}].name`, isObject(c) ? c.name : c, 'every container needs a name');
  const env = new Map<string, string>();
  if (c.env !== undefined && c.env !== null) {
    if (!Array.isArray(c.env)) throw new CaptureError(`${list}[${i}].env`, c.env, 'must be a list');
    for (const e of c.env) {
      // valueFrom entries (secrets, field refs) have no literal value: the capture settings are literals.
      if (isObject(e) && typeof e.name === 'string' && typeof e.value === 'string') env.set(e.name, e.value);
    }
  }
  const sc = isObject(c.securityContext) ? c.securityContext : {};
  const view: ContainerView = { name: c.name, env };
  // Only the proxy's ids, args and image matter; other containers' are the API server's business.
  if (c.name !== PROXY_CONTAINER) return view;
  const uid = optionalId(sc.runAsUser, `${list}[${c.name}].securityContext.runAsUser`);
  const gid = optionalId(sc.runAsGroup, `${list}[${c.name}].securityContext.runAsGroup`);
  if (uid !== undefined) view.runAsUser = uid;
  if (gid !== undefined) view.runAsGroup = gid;
  if (c.args !== undefined && c.args !== null) {
    if (!Array.isArray(c.args) || !c.args.every((a) => typeof a === 'string'))
      throw new CaptureError(`${list}[${c.name}].args`, c.args, 'must be a list of strings');
    view.args = c.args as string[];
  }
  if (c.image !== undefined && c.image !== null) {
    if (typeof c.image !== 'string') throw new CaptureError(`${list}[${c.name}].image`, c.image, 'must be a string');
    view.image = c.image;
  }
  return view;
}

function containerList(spec: Record<string, unknown>, key: 'containers' | 'initContainers'): ContainerView[] {
  const v = spec[key];
  if (key === 'initContainers' && (v === undefined || v === null)) return [];
  if (!Array.isArray(v))
    throw new CaptureError(
      `spec.${key}`,
      v,
      key === 'containers' ? 'a pod needs a list of containers' : 'must be a list',
    );
  return v.map((c, i) => container(`spec.${key}`, c, i));
}

/** A Pod object → the view the capture engine uses. Throws CaptureError naming the bad field. */
export function podFromObject(obj: unknown): PodView {
  if (!isObject(obj)) throw new CaptureError('pod', typeof obj, 'must be a Pod object');
  if (obj.kind !== undefined && obj.kind !== 'Pod') throw new CaptureError('kind', obj.kind, 'must be Pod');
  const meta = isObject(obj.metadata) ? obj.metadata : null;
  if (!meta || typeof meta.name !== 'string' || meta.name === '')
    throw new CaptureError('metadata.name', meta?.name, 'a pod needs a name');
  const namespace = meta.namespace === undefined ? 'default' : meta.namespace;
  if (typeof namespace !== 'string' || namespace === '')
    throw new CaptureError('metadata.namespace', namespace, 'must be a non-empty string');
  const annotations = new Map<string, string>();
  if (meta.annotations !== undefined && meta.annotations !== null) {
    if (!isObject(meta.annotations))
      throw new CaptureError('metadata.annotations', meta.annotations, 'must be a map of strings');
    for (const [k, v] of Object.entries(meta.annotations)) {
      if (typeof v !== 'string')
        throw new CaptureError(k, v, 'annotation values must be strings (quote numbers in YAML)');
      annotations.set(k, v);
    }
  }
  let injectLabel: string | undefined;
  if (isObject(meta.labels) && meta.labels[INJECT_KEY] !== undefined) {
    const v = meta.labels[INJECT_KEY];
    if (typeof v !== 'string')
      throw new CaptureError(`metadata.labels.${INJECT_KEY}`, v, 'label values must be strings');
    injectLabel = v;
  }
  const spec = isObject(obj.spec) ? obj.spec : null;
  if (!spec) throw new CaptureError('spec.containers', undefined, 'a pod needs a list of containers');
  const hostNetwork = spec.hostNetwork === undefined || spec.hostNetwork === null ? false : spec.hostNetwork;
  if (typeof hostNetwork !== 'boolean')
    throw new CaptureError('spec.hostNetwork', hostNetwork, 'must be true or false');
  const view: PodView = {
    name: meta.name,
    namespace,
    annotations,
    hostNetwork,
    initContainers: containerList(spec, 'initContainers'),
    containers: containerList(spec, 'containers'),
  };
  if (injectLabel !== undefined) view.injectLabel = injectLabel;
  if (typeof meta.uid === 'string' && meta.uid !== '') view.uid = meta.uid;
  const ips = podIpsOf(obj);
  if (ips) view.podIps = ips;
  return view;
}

/** `status.podIPs[].ip` (else `status.podIP`), each an IP address; undefined when there are none. */
export function podIpsOf(obj: Record<string, unknown>): string[] | undefined {
  const status = isObject(obj.status) ? obj.status : null;
  if (!status) return undefined;
  const list = Array.isArray(status.podIPs)
    ? status.podIPs.map((e, i) => {
        const ip = isObject(e) ? e.ip : e;
        if (typeof ip !== 'string' || isIP(ip) === 0)
          throw new CaptureError(`status.podIPs[${i}].ip`, ip, 'not an IP address');
        return ip;
      })
    : [];
  if (list.length === 0 && status.podIP !== undefined && status.podIP !== '') {
    if (typeof status.podIP !== 'string' || isIP(status.podIP) === 0)
      throw new CaptureError('status.podIP', status.podIP, 'not an IP address');
    list.push(status.podIP);
  }
  return list.length ? list : undefined;
}

/** The pod object with its IPs as the runtime reported them at ADD (the API's may not be set yet). */
export function withPodIps(obj: Record<string, unknown>, ips: readonly string[]): Record<string, unknown> {
  const status = isObject(obj.status) ? obj.status : {};
  return { ...obj, status: { ...status, podIPs: ips.map((ip) => ({ ip })) } };
}

/**
 * The address families of a pod's IPs as Istio's getLocalIP sees them: IPv4-mapped addresses
 * count as IPv4; loopback and link-local addresses are not counted.
 */
export function globalAddressFamilies(ips: readonly string[]): (4 | 6)[] {
  return ips.flatMap((raw): (4 | 6)[] => {
    const ip = raw.toLowerCase();
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
    const v4 = mapped ? mapped[1]! : isIP(ip) === 4 ? ip : null;
    if (v4) {
      const [a, b, c] = v4.split('.').map(Number) as [number, number, number];
      const local = a === 127 || (a === 169 && b === 254) || (a === 224 && b === 0 && c === 0);
      return local ? [] : [4];
    }
    const local = ip === '::1' || /^fe[89ab]/.test(ip) || ip.startsWith('ff02:');
    return local ? [] : [6];
  });
}

/** YAML or JSON text of one Pod → its object. */
export function parsePodManifest(text: string, source = 'pod manifest'): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new CaptureError(source, '(text)', `not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!isObject(doc)) throw new CaptureError(source, '(text)', 'does not hold a Pod object');
  return doc;
}
