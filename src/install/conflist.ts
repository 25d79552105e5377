// The meshcni entry in the node's CNI configuration, as data: insert it into the primary CNI's
// config text (turning a lone plug-in config into a list the way istio-cni does) and take it out again.
import { extname } from 'node:path';

export const MESHCNI_TYPE = 'meshcni';

/** What the shim reads from its entry in the plug-in list (socketPath, excludeNamespaces, timeoutSeconds). */
export interface MeshcniEntry {
  type: typeof MESHCNI_TYPE;
  socketPath: string;
  excludeNamespaces: string[];
  timeoutSeconds: number;
  logLevel: string;
  podIndexPath: string;
}

export interface EntrySettings {
  socketPath: string;
  excludeNamespaces: readonly string[];
  timeoutSeconds?: number;
  logLevel?: string;
  podIndexPath?: string;
}

export function meshcniEntry(s: EntrySettings): MeshcniEntry {
  return {
    type: MESHCNI_TYPE,
    socketPath: s.socketPath,
    excludeNamespaces: [...s.excludeNamespaces],
    timeoutSeconds: s.timeoutSeconds ?? 5,
    logLevel: s.logLevel ?? 'info',
    podIndexPath: s.podIndexPath ?? '/var/run/meshcni/pod-index',
  };
}

/** A CNI config file we cannot work with; the message names the file and what is wrong. */
export class CniConfigError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`CNI config ${file}: ${reason}`);
    this.name = 'CniConfigError';
  }
}

/** The extensions container runtimes load from the CNI conf dir. */
export const CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'] as const;

/** Used for a converted lone config that had no cniVersion / name (istio-cni's values). */
const FALLBACK_CNI_VERSION = '0.3.1';
const FALLBACK_NETWORK_NAME = 'k8s-pod-network';

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export type ParsedConfig = { kind: 'list'; doc: JsonObject; plugins: unknown[] } | { kind: 'single'; doc: JsonObject };

/**
 * Parses a primary config by content: an object with a `plugins` array is a list (whatever its
 * extension); an object with a `type` is a lone plug-in config. Anything else is an error.
 */
export function parseConfig(fileName: string, text: string): ParsedConfig {
  if (!CONFIG_EXTENSIONS.includes(extname(fileName) as (typeof CONFIG_EXTENSIONS)[number])) {
    throw new CniConfigError(fileName, `not a CNI config file name (want ${CONFIG_EXTENSIONS.join(', ')})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new CniConfigError(fileName, `malformed JSON: ${(e as Error).message}`);
  }
  if (!isObject(doc)) throw new CniConfigError(fileName, 'must be a JSON object');
  if ('plugins' in doc) {
    const plugins = doc.plugins;
    if (!Array.isArray(plugins)) throw new CniConfigError(fileName, "'plugins' must be an array");
    if (plugins.length === 0) throw new CniConfigError(fileName, "'plugins' is empty: no network to chain after");
    plugins.forEach((p, i) => {
      if (!isObject(p) || typeof p.type !== 'string' || p.type === '') {
        throw new CniConfigError(fileName, `plugins[${i}] must be an object with a non-empty 'type'`);
      }
    });
    return { kind: 'list', doc, plugins };
  }
  if (typeof doc.type === 'string' && doc.type !== '') return { kind: 'single', doc };
  throw new CniConfigError(fileName, "missing 'plugins' (conflist) and 'type' (single plug-in config)");
}

/** The name a converted lone config gets: runtimes load only `.conflist` files as lists. */
export function listFileName(fileName: string): string {
  const ext = extname(fileName);
  return ext === '.conflist' ? fileName : fileName.slice(0, fileName.length - ext.length) + '.conflist';
}

export function render(doc: unknown): string {
  return JSON.stringify(doc, null, 2) + '\n';
}

function findEntry(plugins: unknown[]): number {
  return plugins.findIndex((p) => isObject(p) && p.type === MESHCNI_TYPE);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface InsertResult {
  /** The file to write: the same name, or `<stem>.conflist` when a lone config was converted. */
  fileName: string;
  text: string;
  /** False when the file already holds exactly this entry: nothing to write. */
  changed: boolean;
  /** The input already had a meshcni entry (so it is not the primary CNI's original text). */
  hadEntry: boolean;
  /** A lone plug-in config became a list under a new file name. */
  converted: boolean;
}

/**
 * Appends the meshcni entry to the primary config's plug-in list, or updates an existing one in
 * place. Everything else keeps its order and value. A lone plug-in config becomes
 * `{cniVersion, name, plugins: [original minus cniVersion, meshcni]}` as istio-cni does, except
 * that the list keeps the original's cniVersion and name instead of forcing 0.3.1/k8s-pod-network.
 */
export function insertEntry(fileName: string, text: string, entry: MeshcniEntry): InsertResult {
  const parsed = parseConfig(fileName, text);
  const multus = multusDefault(fileName, parsed);
  if (multus) {
    // Multus runs its first delegate as the pod's default network: meshcni belongs at its end.
    const inner = insertEntry(fileName, JSON.stringify(multus.delegates[0]), entry);
    if (!inner.changed) return { fileName, text, changed: false, hadEntry: true, converted: false };
    const delegates = [JSON.parse(inner.text) as JsonObject, ...multus.delegates.slice(1)];
    return {
      fileName,
      text: render({ ...multus.doc, delegates }),
      changed: true,
      hadEntry: inner.hadEntry,
      converted: false,
    };
  }
  if (parsed.kind === 'single') {
    const { cniVersion, ...plugin } = parsed.doc;
    const list = {
      cniVersion: typeof cniVersion === 'string' ? cniVersion : FALLBACK_CNI_VERSION,
      name: typeof plugin.name === 'string' ? plugin.name : FALLBACK_NETWORK_NAME,
      plugins: [plugin, entry],
    };
    const out = listFileName(fileName);
    return { fileName: out, text: render(list), changed: true, hadEntry: false, converted: out !== fileName };
  }
  const plugins = [...parsed.plugins];
  const at = findEntry(plugins);
  if (at >= 0) {
    const dupes = plugins.filter((p) => isObject(p) && p.type === MESHCNI_TYPE).length;
    if (dupes === 1 && sameJson(plugins[at], entry)) {
      return { fileName, text, changed: false, hadEntry: true, converted: false };
    }
    // Update in place and drop any duplicate a past bug or a hand edit left behind.
    const kept = plugins.filter((p, i) => i === at || !(isObject(p) && p.type === MESHCNI_TYPE));
    kept[kept.indexOf(plugins[at])] = entry;
    return {
      fileName,
      text: render({ ...parsed.doc, plugins: kept }),
      changed: true,
      hadEntry: true,
      converted: false,
    };
  }
  plugins.push(entry);
  return { fileName, text: render({ ...parsed.doc, plugins }), changed: true, hadEntry: false, converted: false };
}

export interface RemoveResult {
  text: string;
  /** False when there was no meshcni entry. */
  changed: boolean;
}

/**
 * Removes every meshcni entry from a list config, keeping the rest. This is the structural inverse
 * used when no byte-exact original is available; the list stays a list (still valid for runtimes).
 */
export function removeEntry(fileName: string, text: string): RemoveResult {
  const parsed = parseConfig(fileName, text);
  const multus = multusDefault(fileName, parsed);
  if (multus) {
    const inner = removeEntry(fileName, JSON.stringify(multus.delegates[0]));
    if (!inner.changed) return { text, changed: false };
    return {
      text: render({ ...multus.doc, delegates: [JSON.parse(inner.text) as JsonObject, ...multus.delegates.slice(1)] }),
      changed: true,
    };
  }
  if (parsed.kind === 'single') return { text, changed: false };
  const plugins = parsed.plugins.filter((p) => !(isObject(p) && p.type === MESHCNI_TYPE));
  if (plugins.length === parsed.plugins.length) return { text, changed: false };
  if (plugins.length === 0)
    throw new CniConfigError(fileName, 'holds only the meshcni entry; refusing to leave an empty plug-in list');
  return { text: render({ ...parsed.doc, plugins }), changed: true };
}

/** True when the text is a list config that holds a meshcni entry. */
export function hasEntry(fileName: string, text: string): boolean {
  const parsed = parseConfig(fileName, text);
  const multus = multusDefault(fileName, parsed);
  if (multus) return hasEntry(fileName, JSON.stringify(multus.delegates[0]));
  return parsed.kind === 'list' && findEntry(parsed.plugins) >= 0;
}

/**
 * A Multus config (`"type": "multus"`) with its default network inline as `delegates[0]`; null for
 * any other config. One that names its default network with `clusterNetwork` instead cannot be
 * chained here: the operator points cniConfDir/cniConfFileName at that network's own file.
 */
export function multusDefault(
  fileName: string,
  parsed: ParsedConfig,
): { doc: JsonObject; delegates: JsonObject[] } | null {
  if (parsed.kind !== 'single' || parsed.doc.type !== 'multus') return null;
  const { clusterNetwork, delegates } = parsed.doc;
  if (clusterNetwork !== undefined) {
    throw new CniConfigError(
      fileName,
      `Multus config names its default network with clusterNetwork ${JSON.stringify(clusterNetwork)}; set cniConfDir and cniConfFileName to that network's conflist (Multus reads it, meshcni chains into it)`,
    );
  }
  if (!Array.isArray(delegates) || delegates.length === 0 || !delegates.every(isObject)) {
    throw new CniConfigError(fileName, "Multus config has no 'delegates' array of network configs to chain into");
  }
  return { doc: parsed.doc, delegates: delegates as JsonObject[] };
}
