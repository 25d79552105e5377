// The agent's settings file (YAML): every key, its default and its validation. Capture settings are
// validated by src/capture; this file owns the whole file and rejects keys nobody knows.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';

/**
 * capture: re-apply drifted rules and capture running pods no ADD reached, in place;
 * repair: re-apply drift only; delete: delete such pods through the API (Istio's way); report: log only.
 */
export type RepairPolicy = 'capture' | 'repair' | 'delete' | 'report';

export interface AgentSettings {
  socketPath: string;
  stateDir: string;
  /** Standalone mode: pods come from manifests in this directory instead of the API server. */
  podsDir?: string;
  /** This node's name (Kubernetes mode); default from $NODE_NAME. */
  nodeName?: string;
  /** Kubeconfig file (Kubernetes mode); default in-cluster or $KUBECONFIG. */
  kubeconfig?: string;
  /** host:port of the loopback HTTP server for /healthz, /readyz, /metrics; '' disables it. */
  metricsAddress: string;
  /**
   * host:port serving only /metrics, for Prometheus; any IP literal ('0.0.0.0:15121' is every node
   * address: the agent is hostNetwork). '' (default) serves no scrape endpoint beyond metricsAddress.
   */
  metricsScrapeAddress: string;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  cniConfDir: string;
  cniBinDir: string;
  /** Chain into this file of cniConfDir (e.g. a Multus delegate) instead of the runtime's first; '' = first. */
  cniConfFileName: string;
  /**
   * '' (default): chain into the primary's own file. A .conflist name: write this file of cniConfDir instead,
   * the primary's plug-ins plus meshcni, sorting first, and never touch the primary's file (istio-cni's
   * istioOwnedCNIConfig).
   */
  ownedConfigFileName: string;
  /** false: standalone (Multus) mode, meshcni's own network in cniConfFileName (a .conf); see src/install. */
  chained: boolean;
  /** Chain into the node's CNI config on start (serve). */
  install: boolean;
  uninstallOnShutdown: boolean;
  /** Kubernetes: at SIGTERM, unchain when the agent's own DaemonSet is being deleted or gone (not on upgrades). */
  uninstallOnRemoval: boolean;
  /** Kubernetes: lift readinessTaintKey from this node once the agent is ready. */
  removeReadinessTaint: boolean;
  readinessTaintKey: string;
  /** Exercise the ADD hot path once (plan, encode, apply into a throwaway netns) before reporting ready. */
  warmStart: boolean;
  repairPolicy: RepairPolicy;
  /** Where the host's processes are seen (capture in place scans it): `/host/proc` in the DaemonSet. */
  procRoot: string;
  /** 0 disables the periodic reconcile (it still runs once at start). */
  reconcileIntervalSeconds: number;
  podLookupTimeoutMs: number;
  maxBodyBytes: number;
  /** Everything else in the file: the capture settings, validated by src/capture. */
  capture: Record<string, unknown>;
}

export const CAPTURE_KEYS = [
  'excludeNamespaces',
  'layout',
  'nftSets',
  'dualStack',
  'requireSidecarStatus',
  'istioVersion',
] as const;

export const DEFAULT_SETTINGS: Omit<AgentSettings, 'capture'> = {
  socketPath: '/var/run/meshcni/cni.sock',
  stateDir: '/var/run/meshcni',
  metricsAddress: '127.0.0.1:15120',
  metricsScrapeAddress: '',
  logLevel: 'info',
  cniConfDir: '/etc/cni/net.d',
  cniBinDir: '/opt/cni/bin',
  cniConfFileName: '',
  ownedConfigFileName: '',
  chained: true,
  install: false,
  uninstallOnShutdown: false,
  uninstallOnRemoval: true,
  removeReadinessTaint: false,
  readinessTaintKey: 'meshcni.io/agent-not-ready',
  warmStart: true,
  repairPolicy: 'capture',
  procRoot: '/proc',
  reconcileIntervalSeconds: 60,
  podLookupTimeoutMs: 2000,
  maxBodyBytes: 1 << 20,
};

export class ConfigError extends Error {
  constructor(source: string, key: string, value: unknown, reason: string) {
    super(`${source}: setting '${key}' = ${JSON.stringify(value)}: ${reason}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const POLICIES = ['capture', 'repair', 'delete', 'report'];

type Checker = (v: unknown) => string | null;
const isString: Checker = (v) => (typeof v === 'string' && v !== '' ? null : 'must be a non-empty string');
const isAbsPath: Checker = (v) => (typeof v === 'string' && v.startsWith('/') ? null : 'must be an absolute path');
const isBool: Checker = (v) => (typeof v === 'boolean' ? null : 'must be true or false');
const oneOf =
  (allowed: string[]): Checker =>
  (v) =>
    typeof v === 'string' && allowed.includes(v) ? null : `must be one of ${allowed.join(', ')}`;
const intRange =
  (min: number, max: number): Checker =>
  (v) =>
    Number.isInteger(v) && (v as number) >= min && (v as number) <= max
      ? null
      : `must be an integer from ${min} to ${max}`;
const hostPort: Checker = (v) => {
  if (v === '') return null;
  if (typeof v !== 'string') return 'must be host:port';
  const m = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) return 'must be a loopback host:port such as 127.0.0.1:15120 (or empty to disable)';
  return null;
};

const anyHostPort: Checker = (v) => {
  if (v === '') return null;
  const m = typeof v === 'string' ? /^(?:\[([0-9a-fA-F:.]+)\]|(\d+\.\d+\.\d+\.\d+)):(\d{1,5})$/.exec(v) : null;
  const ip = m ? (m[1] ?? m[2])! : '';
  if (!m || isIP(ip) !== (m[1] ? 6 : 4) || Number(m[3]) > 65535)
    return "must be IP:port such as 0.0.0.0:15121 or [::]:15121 (or '' to disable)";
  return null;
};

const CHECKS: Record<Exclude<keyof AgentSettings, 'capture'>, Checker> = {
  socketPath: isAbsPath,
  stateDir: isAbsPath,
  podsDir: isAbsPath,
  nodeName: isString,
  kubeconfig: isAbsPath,
  metricsAddress: hostPort,
  metricsScrapeAddress: anyHostPort,
  logLevel: oneOf(LOG_LEVELS),
  cniConfDir: isAbsPath,
  cniBinDir: isAbsPath,
  cniConfFileName: (v) =>
    v === '' || (typeof v === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]*\.(conflist|conf|json)$/.test(v))
      ? null
      : 'must be a file name in cniConfDir ending in .conflist, .conf or .json (or empty)',
  ownedConfigFileName: (v) =>
    v === '' || (typeof v === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]*\.conflist$/.test(v))
      ? null
      : 'must be a file name in cniConfDir ending in .conflist (or empty)',
  chained: isBool,
  install: isBool,
  uninstallOnShutdown: isBool,
  uninstallOnRemoval: isBool,
  removeReadinessTaint: isBool,
  warmStart: isBool,
  readinessTaintKey: (v) =>
    typeof v === 'string' &&
    /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(v)
      ? null
      : 'must be a label-style key such as meshcni.io/agent-not-ready',
  repairPolicy: oneOf(POLICIES),
  procRoot: isAbsPath,
  reconcileIntervalSeconds: intRange(0, 86400),
  podLookupTimeoutMs: intRange(0, 60000),
  maxBodyBytes: intRange(1024, 64 << 20),
};

/**
 * Validates a settings object (from the file, then flags on top). Unknown keys are errors: a typo
 * in a node's config must not silently fall back to a default.
 */
export function parseSettings(obj: Record<string, unknown>, source: string): AgentSettings {
  const out: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  const capture: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    if (value === undefined) continue;
    if ((CAPTURE_KEYS as readonly string[]).includes(key)) {
      capture[key] = value;
      continue;
    }
    const check = CHECKS[key as keyof typeof CHECKS];
    if (!check) throw new ConfigError(source, key, value, 'unknown setting');
    const problem = check(value);
    if (problem) throw new ConfigError(source, key, value, problem);
    out[key] = value;
  }
  return { ...(out as Omit<AgentSettings, 'capture'>), capture };
}

/** Reads the YAML file (absent path → defaults). */
export function loadSettingsFile(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new Error(`config file ${path} is not valid YAML: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new Error(`config file ${path} must be a YAML mapping of settings`);
  return doc as Record<string, unknown>;
}
