// Checks a parsed manifest against the Kubernetes API types as @kubernetes/client-node's generated
// models describe them (every field and its type, per model): unknown fields and wrong types are
// reported with their path. No API server here; this is the part of its validation that is static.
import * as k8s from '@kubernetes/client-node';

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}

type Model = { getAttributeTypeMap(): Attribute[] };

function model(name: string): Model | undefined {
  const m = (k8s as unknown as Record<string, unknown>)[name] as Partial<Model> | undefined;
  return typeof m?.getAttributeTypeMap === 'function' ? (m as Model) : undefined;
}

/** `apps/v1` + `DaemonSet` → `V1DaemonSet`, the model's class name. */
export function modelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').pop()!;
  return `${version[0]!.toUpperCase()}${version.slice(1)}${kind}`;
}

const describeValue = (v: unknown): string =>
  Array.isArray(v)
    ? 'an array'
    : v === null
      ? 'null'
      : typeof v === 'object'
        ? 'an object'
        : `${typeof v} ${JSON.stringify(v)}`;

function check(value: unknown, type: string, format: string, path: string, problems: string[]): void {
  const wrong = (want: string): void => {
    problems.push(`${path}: want ${want}, got ${describeValue(value)}`);
  };
  const array = /^Array<(.+)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (type === 'any') return;
  if (array) {
    if (!Array.isArray(value)) return wrong(type);
    value.forEach((v, i) => check(v, array[1]!, '', `${path}[${i}]`, problems));
  } else if (map) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return wrong(type);
    for (const [k, v] of Object.entries(value)) check(v, map[1]!, '', `${path}.${k}`, problems);
  } else if (type === 'string' || type === 'Date') {
    if (typeof value !== 'string') wrong('a string');
  } else if (type === 'number') {
    if (typeof value !== 'number' || (/^int/.test(format) && !Number.isInteger(value)))
      wrong(/^int/.test(format) ? 'an integer' : 'a number');
  } else if (type === 'boolean') {
    if (typeof value !== 'boolean') wrong('true or false');
  } else if (type === 'IntOrString') {
    if (!(typeof value === 'string' || Number.isInteger(value))) wrong('an integer or a string');
  } else {
    const m = model(type);
    if (!m) {
      problems.push(`${path}: no model ${type} to check against`);
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return wrong(`an object (${type})`);
    const attrs = new Map(m.getAttributeTypeMap().map((a) => [a.baseName, a]));
    for (const [k, v] of Object.entries(value)) {
      const a = attrs.get(k);
      if (!a) problems.push(`${path}.${k}: unknown field of ${type}`);
      else if (v !== null) check(v, a.type, a.format, `${path}.${k}`, problems);
    }
  }
}

/** Every problem of one manifest object, as `kind/name.path: reason` lines; [] when it is valid. */
export function validateObject(obj: { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } }): string[] {
  if (typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string')
    return ['apiVersion and kind must be strings'];
  const name = modelName(obj.apiVersion, obj.kind);
  if (!model(name)) return [`${obj.apiVersion} ${obj.kind}: no such Kubernetes API type (${name})`];
  const problems: string[] = [];
  check(obj, name, '', `${obj.kind}/${String(obj.metadata?.name ?? '?')}`, problems);
  return problems;
}
