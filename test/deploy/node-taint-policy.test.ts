// deploy/node-taint-policy.yaml: what the ValidatingAdmissionPolicy admits and refuses for a node
// update, evaluated as the API server does (test/helpers/admission-policy.ts). The agent's own
// patch, as node-lifecycle.ts sends it, is also run through it by the in-process API of
// test/e2e/lifecycle.test.ts.
import { describe, expect, it } from 'vitest';
import { admit, loadPolicy, type AdmissionRequest } from '../helpers/admission-policy.js';

const policy = loadPolicy(
  new URL('../../deploy/node-taint-policy.yaml', import.meta.url).pathname,
  'meshcni-agent-node-taint',
);
const AGENT = 'system:serviceaccount:kube-system:meshcni-agent';
const OURS = { key: 'meshcni.io/agent-not-ready', effect: 'NoSchedule' };
const OTHER = { key: 'other/keep', effect: 'NoExecute', value: 'x' };
const oldNode = {
  metadata: { name: 'node-1', labels: { zone: 'a' } },
  spec: { taints: [OURS, OTHER], podCIDRs: ['10.0.1.0/24'] },
};
type NodeObj = typeof oldNode & { spec: Record<string, unknown>; metadata: Record<string, unknown> };
const edit = (f: (n: NodeObj) => void): NodeObj => {
  const n = structuredClone(oldNode) as NodeObj;
  f(n);
  return n;
};
const req = (over: Partial<AdmissionRequest>): AdmissionRequest => ({
  operation: 'UPDATE',
  resource: 'nodes',
  userInfo: { username: AGENT, extra: { 'authentication.kubernetes.io/node-name': ['node-1'] } },
  object: edit((n) => (n.spec.taints = [OTHER])),
  oldObject: oldNode,
  ...over,
});

describe('node-taint-policy.yaml', () => {
  it.each<[string, Partial<AdmissionRequest>, RegExp | null]>([
    ['the agent removes its readiness taint from its own node', {}, null],
    [
      'the agent removes the last taint (taints absent afterwards)',
      {
        oldObject: edit((n) => (n.spec.taints = [OURS])),
        object: edit((n) => delete (n.spec as { taints?: unknown }).taints),
      },
      null,
    ],
    [
      'the agent removes another taint',
      { object: edit((n) => (n.spec.taints = [OURS])) },
      /only remove the meshcni.io\/agent-not-ready taint/,
    ],
    [
      'the agent adds a taint',
      { object: edit((n) => (n.spec.taints = [OTHER, { key: 'evil', effect: 'NoSchedule' }])) },
      /only remove/,
    ],
    [
      'the agent changes a label',
      { object: edit((n) => ((n.spec.taints = [OTHER]), (n.metadata.labels = { zone: 'b' }))) },
      /nothing of a node but its readiness taint/,
    ],
    [
      'the agent cordons the node',
      { object: edit((n) => ((n.spec.taints = [OTHER]), (n.spec.unschedulable = true))) },
      /nothing of a node but/,
    ],
    [
      'the agent patches another node',
      { userInfo: { username: AGENT, extra: { 'authentication.kubernetes.io/node-name': ['node-2'] } } },
      /only change the node its own pod runs on/,
    ],
    [
      'the agent, with a token that names no node',
      { userInfo: { username: AGENT } },
      /only change the node its own pod runs on/,
    ],
    ['the agent updates node status', { subResource: 'status' }, /may not delete nodes or change their status/],
    ['the agent deletes the node', { operation: 'DELETE', object: null }, /may not delete nodes/],
  ])('%s', (_what, over, refused) => {
    const v = admit(policy, req(over));
    if (refused === null) expect(v).toEqual({ allowed: true, applied: true });
    else expect(v).toEqual({ allowed: false, message: expect.stringMatching(refused) });
  });

  it('does not apply to anyone but the agent ServiceAccount', () => {
    expect(
      admit(
        policy,
        req({ userInfo: { username: 'system:node:node-1' }, object: edit((n) => (n.metadata.labels = { zone: 'b' })) }),
      ),
    ).toEqual({ allowed: true, applied: false });
  });
});
