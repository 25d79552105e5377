// The shim ↔ agent wire format and CNI semantics: request validation, error codes, result versions.
import { isIP } from 'node:net';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** CNI error codes (spec section "Error"). */
export const CNI_ERR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  internal: 999,
} as const;

/** An error the agent answers with: becomes CNI error JSON and a non-2xx HTTP status. */
export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details = '',
    readonly httpStatus = 500,
  ) {
    super(message);
    this.name = 'CniError';
  }
}

/** The network configuration the runtime gave the shim (the meshcni entry of the conflist). */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  prevResult?: Record<string, unknown>;
  [k: string]: unknown;
}

/** What the shim forwards: `POST /v1/cni` with this JSON body. */
export interface CniRequest {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  args: string;
  path: string;
  config: NetConf;
}

/**
 * `K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;…` → a map. The shim reads CNI_ARGS by the same rule (skel.c):
 * each key at most once, so the two can never take different elements for the same key.
 */
export function parseCniArgs(args: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of args.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERR.invalidEnv, `CNI_ARGS element '${part}' is not KEY=VALUE`, '', 400);
    const key = part.slice(0, eq);
    if (m.has(key)) throw new CniError(CNI_ERR.invalidEnv, `CNI_ARGS names key '${key}' more than once`, '', 400);
    m.set(key, part.slice(eq + 1));
  }
  return m;
}

/** The pod a request is for, as the kubelet names it in CNI_ARGS; empty values count as absent. */
export interface PodArgs {
  namespace?: string;
  name?: string;
  uid?: string;
}

/** CNI_ARGS → the pod's names (parseCniArgs' rule; throws CniError on malformed args). */
export function podArgs(args: string): PodArgs {
  const a = parseCniArgs(args);
  const out: PodArgs = {};
  const namespace = a.get('K8S_POD_NAMESPACE');
  const name = a.get('K8S_POD_NAME');
  const uid = a.get('K8S_POD_UID');
  if (namespace) out.namespace = namespace;
  if (name) out.name = name;
  if (uid) out.uid = uid;
  return out;
}

/** podArgs, or nothing known when the args are malformed (for logs and events; the handler reports the error). */
export function podArgsOrEmpty(args: string): PodArgs {
  try {
    return podArgs(args);
  } catch {
    return {};
  }
}

/**
 * The path of the first string (key or value) in `v` that holds a NUL, or null. The shim refuses
 * `\u0000` in any string of the configuration (a C string cannot hold it); the agent refuses it too.
 */
export function nulStringPath(v: unknown, at = 'config'): string | null {
  if (typeof v === 'string') return v.includes('\0') ? at : null;
  if (typeof v !== 'object' || v === null) return null;
  for (const [k, child] of Array.isArray(v) ? v.entries() : Object.entries(v)) {
    if (typeof k === 'string' && k.includes('\0')) return `${at} key ${JSON.stringify(k)}`;
    const found = nulStringPath(child, Array.isArray(v) ? `${at}[${k}]` : `${at}.${k}`);
    if (found) return found;
  }
  return null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Longest request string field; containerId, netns and ifName get their own tighter bounds below. */
const MAX_FIELD_CHARS = 65536;

function field(body: Record<string, unknown>, name: string, required: boolean): string {
  const v = body[name];
  if (v === undefined || v === '') {
    if (required) throw new CniError(CNI_ERR.invalidEnv, `request field '${name}' is required`, '', 400);
    return '';
  }
  if (typeof v !== 'string') throw new CniError(CNI_ERR.decode, `request field '${name}' must be a string`, '', 400);
  if (v.length > MAX_FIELD_CHARS)
    throw new CniError(CNI_ERR.decode, `request field '${name}' is too long (${v.length} characters)`, '', 400);
  return v;
}

/**
 * The container id bound: it names the state record file (`<id>.json`, and `<id>.json.<pid>.<seq>.tmp`
 * while it is written), which must stay under NAME_MAX (255 bytes). Runtimes use 64 hex digits.
 */
export const MAX_CONTAINER_ID = 200;
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Linux PATH_MAX less the terminating NUL. */
export const MAX_NETNS_PATH = 4095;
/** Linux IFNAMSIZ less the terminating NUL. */
export const MAX_IFNAME_BYTES = 15;

const shown = (v: string): string =>
  JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v) + (v.length > 80 ? ` (${v.length} characters)` : '');

/** Why a container id (CNI_CONTAINERID) is unusable, or null. CNI spec: alphanumerics plus `_ . -`. */
export function containerIdProblem(id: string): string | null {
  if (id.length > MAX_CONTAINER_ID) return `CNI_CONTAINERID ${shown(id)} is longer than ${MAX_CONTAINER_ID} characters`;
  if (!CONTAINER_ID.test(id))
    return `CNI_CONTAINERID ${shown(id)} must start with a letter or digit and hold only letters, digits, '_', '.' and '-'`;
  return null;
}

/** Why a netns path (CNI_NETNS) is unusable, or null. Whether it is a netns is the kernel's to say. */
export function netnsProblem(path: string): string | null {
  if (path.includes('\0')) return `CNI_NETNS ${shown(path)} contains a NUL byte`;
  if (!path.startsWith('/')) return `CNI_NETNS ${shown(path)} must be an absolute path`;
  if (Buffer.byteLength(path) > MAX_NETNS_PATH)
    return `CNI_NETNS ${shown(path)} is longer than ${MAX_NETNS_PATH} bytes`;
  return null;
}

/** Why an interface name (CNI_IFNAME) is unusable, or null: the kernel's dev_valid_name rules. */
export function ifNameProblem(name: string): string | null {
  if (Buffer.byteLength(name) > MAX_IFNAME_BYTES)
    return `CNI_IFNAME ${shown(name)} is longer than ${MAX_IFNAME_BYTES} bytes`;
  if (name === '.' || name === '..') return `CNI_IFNAME ${shown(name)} is not an interface name`;
  if (/[/:\s\0]/.test(name)) return `CNI_IFNAME ${shown(name)} must not contain '/', ':', NUL or whitespace`;
  return null;
}

/**
 * The first unusable runtime-supplied value of a per-container request, as the CNI error to answer
 * (code 4: invalid necessary environment variable), or null when all are usable.
 */
export function runtimeValueError(req: CniRequest): CniError | null {
  const problem =
    (req.containerId ? containerIdProblem(req.containerId) : null) ??
    (req.netns ? netnsProblem(req.netns) : null) ??
    (req.ifName ? ifNameProblem(req.ifName) : null);
  return problem ? new CniError(CNI_ERR.invalidEnv, problem, '', 400) : null;
}

/** Validates a decoded request body strictly: unknown fields, wrong types and missing values are errors. */
export function parseCniRequest(body: unknown): CniRequest {
  if (!isObject(body)) throw new CniError(CNI_ERR.decode, 'request body must be a JSON object', '', 400);
  const allowed = new Set(['command', 'containerId', 'netns', 'ifName', 'args', 'path', 'config']);
  for (const k of Object.keys(body)) {
    if (!allowed.has(k)) throw new CniError(CNI_ERR.decode, `unknown request field '${k}'`, '', 400);
  }
  const command = field(body, 'command', true) as CniCommand;
  if (!CNI_COMMANDS.includes(command))
    throw new CniError(CNI_ERR.invalidEnv, `unknown CNI command '${command}'`, '', 400);
  const perContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  const config = body.config;
  if (!isObject(config))
    throw new CniError(CNI_ERR.decode, "request field 'config' must be the network configuration object", '', 400);
  const nul = nulStringPath(config);
  if (nul) throw new CniError(CNI_ERR.decode, `${nul} holds \\u0000, which no CNI input may`, '', 400);
  for (const k of ['cniVersion', 'name', 'type'] as const) {
    if (typeof config[k] !== 'string' || config[k] === '') {
      throw new CniError(
        CNI_ERR.invalidConfig,
        `network configuration field '${k}' must be a non-empty string`,
        '',
        400,
      );
    }
  }
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(config.cniVersion as string)) {
    throw new CniError(
      CNI_ERR.incompatibleVersion,
      `cniVersion '${String(config.cniVersion)}' is not supported`,
      SUPPORTED_VERSIONS.join(','),
      400,
    );
  }
  if (config.prevResult !== undefined && !isObject(config.prevResult)) {
    throw new CniError(CNI_ERR.decode, "network configuration field 'prevResult' must be an object", '', 400);
  }
  return {
    command,
    containerId: field(body, 'containerId', perContainer),
    netns: field(body, 'netns', command === 'ADD' || command === 'CHECK'),
    ifName: field(body, 'ifName', perContainer),
    args: field(body, 'args', false),
    path: field(body, 'path', false),
    config: config as NetConf,
  };
}

const major = (v: string): number => Number(v.split('.')[0]);

/**
 * The previous plug-in's result, in the requested version. 0.3.x/0.4.0 results carry
 * `ips[].version`; 1.x results do not. Everything else is passed through untouched.
 */
export function convertResult(prev: Record<string, unknown> | undefined, cniVersion: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(prev ?? {}), cniVersion };
  if (Array.isArray(out.ips)) {
    out.ips = out.ips.map((ip: unknown) => {
      if (!isObject(ip)) return ip;
      const { version: _v, ...rest } = ip;
      if (major(cniVersion) >= 1) return rest;
      const address = typeof ip.address === 'string' ? ip.address : '';
      return { version: address.includes(':') ? '6' : '4', ...rest };
    });
  }
  return out;
}

/**
 * The pod's IPs from the previous plug-in's result (`ips[].address`, CIDR notation), in order.
 * Undefined when there are none or any entry is not an address: then nothing is known of them.
 */
export function prevResultIps(prev: Record<string, unknown> | undefined): string[] | undefined {
  if (!prev || !Array.isArray(prev.ips) || prev.ips.length === 0) return undefined;
  const out: string[] = [];
  for (const ip of prev.ips) {
    const address = isObject(ip) && typeof ip.address === 'string' ? ip.address : '';
    const m = /^([^/]+)(?:\/\d{1,3})?$/.exec(address);
    if (!m || isIP(m[1]!) === 0) return undefined;
    out.push(m[1]!);
  }
  return out;
}

export function errorBody(cniVersion: string, e: CniError): Record<string, unknown> {
  return { cniVersion, code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) };
}
