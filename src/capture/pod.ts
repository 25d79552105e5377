// The parts of a Kubernetes Pod the capture engine reads, validated out of a plain object (as the
// API server or `kubectl get pod -o yaml` gives it) or out of YAML/JSON text.
import { parse as parseYaml } from 'yaml';
import { PROXY_CONTAINER } from './decision.js';
import { CaptureError } from './errors.js';

export interface ContainerView {
  name: string;
  env: Map<string, string>;
  runAsUser?: number;
  runAsGroup?: number;
}

export interface PodView {
  name: string;
  namespace: string;
  uid?: string;
  annotations: Map<string, string>;
  containers: ContainerView[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Largest valid uid/gid: 4294967295 is (uid_t)-1, "no id", and the kernel rejects it (EINVAL). */
export const MAX_ID = 4294967294;

function optionalId(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_ID) throw new CaptureError(what, v, `must be an integer id from 0 to ${MAX_ID}`);
  return v;
}

function container(c: unknown, i: number): ContainerView {
  if (!isObject(c) || typeof c.name !== 'string' || c.name === '') throw new CaptureError(`spec.containers[${i}].name`, isObject(c) ? c.name : c, 'every container needs a name');
  const env = new Map<string, string>();
  if (c.env !== undefined && c.env !== null) {
    if (!Array.isArray(c.env)) throw new CaptureError(`spec.containers[${i}].env`, c.env, 'must be a list');
    for (const e of c.env) {
      // valueFrom entries (secrets, field refs) have no literal value: the capture settings are literals.
      if (isObject(e) && typeof e.name === 'string' && typeof e.value === 'string') env.set(e.name, e.value);
    }
  }
  const sc = isObject(c.securityContext) ? c.securityContext : {};
  const view: ContainerView = { name: c.name, env };
  // Only the proxy's ids become rules; other containers' ids are the API server's business.
  if (c.name !== PROXY_CONTAINER) return view;
  const uid = optionalId(sc.runAsUser, `spec.containers[${c.name}].securityContext.runAsUser`);
  const gid = optionalId(sc.runAsGroup, `spec.containers[${c.name}].securityContext.runAsGroup`);
  if (uid !== undefined) view.runAsUser = uid;
  if (gid !== undefined) view.runAsGroup = gid;
  return view;
}

/** A Pod object → the view the capture engine uses. Throws CaptureError naming the bad field. */
export function podFromObject(obj: unknown): PodView {
  if (!isObject(obj)) throw new CaptureError('pod', typeof obj, 'must be a Pod object');
  if (obj.kind !== undefined && obj.kind !== 'Pod') throw new CaptureError('kind', obj.kind, 'must be Pod');
  const meta = isObject(obj.metadata) ? obj.metadata : null;
  if (!meta || typeof meta.name !== 'string' || meta.name === '') throw new CaptureError('metadata.name', meta?.name, 'a pod needs a name');
  const namespace = meta.namespace === undefined ? 'default' : meta.namespace;
  if (typeof namespace !== 'string' || namespace === '') throw new CaptureError('metadata.namespace', namespace, 'must be a non-empty string');
  const annotations = new Map<string, string>();
  if (meta.annotations !== undefined && meta.annotations !== null) {
    if (!isObject(meta.annotations)) throw new CaptureError('metadata.annotations', meta.annotations, 'must be a map of strings');
    for (const [k, v] of Object.entries(meta.annotations)) {
      if (typeof v !== 'string') throw new CaptureError(k, v, 'annotation values must be strings (quote numbers in YAML)');
      annotations.set(k, v);
    }
  }
  const spec = isObject(obj.spec) ? obj.spec : null;
  if (!spec || !Array.isArray(spec.containers)) throw new CaptureError('spec.containers', spec?.containers, 'a pod needs a list of containers');
  const view: PodView = { name: meta.name, namespace, annotations, containers: spec.containers.map(container) };
  if (typeof meta.uid === 'string' && meta.uid !== '') view.uid = meta.uid;
  return view;
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
