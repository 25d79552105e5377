// A ValidatingAdmissionPolicy evaluated the way the API server does for one request: the resource
// rules and operations of matchConstraints, then every matchCondition (all true, or the policy does
// not apply), then each validation in order — the first false one denies with its message. CEL by
// @marcbachmann/cel-js, with the request variables the API server binds (object, oldObject, request).
import { evaluate } from '@marcbachmann/cel-js';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

export interface AdmissionRequest {
  operation: 'CREATE' | 'UPDATE' | 'DELETE';
  resource: string;
  subResource?: string;
  userInfo: { username: string; extra?: Record<string, string[]> };
  object: unknown;
  oldObject: unknown;
}

interface Policy {
  spec: {
    matchConstraints: { resourceRules: { resources: string[]; operations: string[] }[] };
    matchConditions?: { name: string; expression: string }[];
    validations: { expression: string; message: string }[];
  };
}

export type Verdict = { allowed: true; applied: boolean } | { allowed: false; message: string };

export function loadPolicy(file: string, name: string): Policy {
  const docs = parseAllDocuments(readFileSync(file, 'utf8')).map(
    (d) => d.toJS() as { kind: string; metadata: { name: string } } & Policy,
  );
  const p = docs.find((d) => d.kind === 'ValidatingAdmissionPolicy' && d.metadata.name === name);
  if (!p) throw new Error(`${file}: no ValidatingAdmissionPolicy ${name}`);
  return p;
}

export function admit(policy: Policy, req: AdmissionRequest): Verdict {
  const full = req.subResource ? `${req.resource}/${req.subResource}` : req.resource;
  const matched = policy.spec.matchConstraints.resourceRules.some(
    (r) => r.resources.includes(full) && r.operations.includes(req.operation),
  );
  if (!matched) return { allowed: true, applied: false };
  const vars = {
    object: req.object ?? null,
    oldObject: req.oldObject ?? null,
    request: { operation: req.operation, subResource: req.subResource ?? '', userInfo: req.userInfo },
  };
  for (const c of policy.spec.matchConditions ?? [])
    if (evaluate(c.expression, vars) !== true) return { allowed: true, applied: false };
  for (const v of policy.spec.validations) {
    let ok: unknown;
    try {
      ok = evaluate(v.expression, vars);
    } catch (e) {
      return { allowed: false, message: `${v.message} (expression error: ${(e as Error).message})` };
    }
    if (ok !== true) return { allowed: false, message: v.message };
  }
  return { allowed: true, applied: true };
}
