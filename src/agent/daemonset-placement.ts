// Does a DaemonSet still place its pod on a node? What the DaemonSet controller decides from the pod
// template: nodeSelector, required node affinity, and tolerations of the node's NoSchedule /
// NoExecute taints (with the tolerations the controller adds to every DaemonSet pod). At SIGTERM a
// DaemonSet that no longer places a pod here means meshcni is leaving this node, as Istio's
// ShouldStopCleanup decides it. Pure: plain objects in, a reason out.

export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
}
export interface NodeTaint {
  key: string;
  value?: string;
  effect?: string;
}
interface Requirement {
  key: string;
  operator: string;
  values?: string[];
}
interface Term {
  matchExpressions?: Requirement[];
  matchFields?: Requirement[];
}
export interface PodPlacement {
  nodeSelector?: Record<string, string>;
  affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: Term[] } } };
  tolerations?: Toleration[];
}
export interface NodeFacts {
  name: string;
  labels?: Record<string, string>;
  taints?: NodeTaint[];
}

/** Added by the DaemonSet controller to every DaemonSet pod (pkg/controller/daemon/util). */
const CONTROLLER_TOLERATIONS: Toleration[] = [
  { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/memory-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/pid-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/network-unavailable', operator: 'Exists', effect: 'NoSchedule' },
];

export function tolerates(t: Toleration, taint: NodeTaint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if ((t.operator ?? 'Equal') === 'Exists') return !t.key || t.key === taint.key;
  return t.key === taint.key && (t.value ?? '') === (taint.value ?? '');
}

function requirementHolds(r: Requirement, value: string | undefined): boolean {
  const values = r.values ?? [];
  switch (r.operator) {
    case 'In':
      return value !== undefined && values.includes(value);
    case 'NotIn':
      return value === undefined || !values.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
    case 'Gt':
    case 'Lt': {
      const n = Number(value);
      const bound = Number(values[0]);
      if (value === undefined || !Number.isInteger(n) || !Number.isInteger(bound)) return false;
      return r.operator === 'Gt' ? n > bound : n < bound;
    }
    default:
      return false; // an operator the API would refuse: matches nothing
  }
}

/** A term matches when all its requirements hold; an empty term matches nothing (as the scheduler has it). */
function termMatches(term: Term, node: NodeFacts): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  return (
    exprs.every((r) => requirementHolds(r, node.labels?.[r.key])) &&
    fields.every((r) => requirementHolds(r, r.key === 'metadata.name' ? node.name : undefined))
  );
}

/** null when the DaemonSet's pod template still lands on the node; otherwise why not. */
export function placementProblem(spec: PodPlacement, node: NodeFacts): string | null {
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) {
    if (node.labels?.[k] !== v)
      return `nodeSelector ${k}=${v} does not match node ${node.name} (${k}=${node.labels?.[k] ?? '<unset>'})`;
  }
  const terms = spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms && !terms.some((t) => termMatches(t, node)))
    return `required node affinity matches none of node ${node.name}'s labels`;
  const tolerations = [...(spec.tolerations ?? []), ...CONTROLLER_TOLERATIONS];
  for (const taint of node.taints ?? []) {
    if (taint.effect !== 'NoSchedule' && taint.effect !== 'NoExecute') continue;
    if (!tolerations.some((t) => tolerates(t, taint)))
      return `node ${node.name} has taint ${taint.key}${taint.value ? `=${taint.value}` : ''}:${taint.effect} that the DaemonSet does not tolerate`;
  }
  return null;
}
