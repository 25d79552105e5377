// Whether a DaemonSet's pod template still lands on a node: the decision behind "removal by
// affinity" at SIGTERM. Pure, table-driven.
import { describe, expect, it } from 'vitest';
import { placementProblem, type NodeFacts, type PodPlacement } from '../../src/agent/daemonset-placement.js';

const node: NodeFacts = {
  name: 'n1',
  labels: { zone: 'a', gen: '5' },
  taints: [
    { key: 'dedicated', value: 'mesh', effect: 'NoSchedule' },
    { key: 'soft', effect: 'PreferNoSchedule' },
  ],
};
const tolerateDedicated = [{ key: 'dedicated', operator: 'Equal', value: 'mesh', effect: 'NoSchedule' }];
const affinity = (...terms: object[]): PodPlacement['affinity'] => ({
  nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms as never } },
});

describe('placementProblem', () => {
  it.each<[string, PodPlacement, RegExp | null]>([
    ['tolerates every taint with operator Exists', { tolerations: [{ operator: 'Exists' }] }, null],
    [
      'tolerates the NoSchedule taint by key and value (PreferNoSchedule never blocks)',
      { tolerations: tolerateDedicated },
      null,
    ],
    [
      'does not tolerate a NoSchedule taint',
      {},
      /taint dedicated=mesh:NoSchedule that the DaemonSet does not tolerate/,
    ],
    [
      'a toleration with another value does not match',
      { tolerations: [{ key: 'dedicated', value: 'gpu' }] },
      /does not tolerate/,
    ],
    ['nodeSelector matches', { nodeSelector: { zone: 'a' }, tolerations: tolerateDedicated }, null],
    [
      'nodeSelector does not match',
      { nodeSelector: { zone: 'b' }, tolerations: tolerateDedicated },
      /nodeSelector zone=b does not match node n1 \(zone=a\)/,
    ],
    [
      'affinity In matches one term of two',
      {
        affinity: affinity(
          { matchExpressions: [{ key: 'zone', operator: 'In', values: ['x'] }] },
          { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] },
        ),
        tolerations: tolerateDedicated,
      },
      null,
    ],
    [
      'affinity NotIn excludes the node',
      {
        affinity: affinity({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }),
        tolerations: tolerateDedicated,
      },
      /required node affinity/,
    ],
    [
      'affinity DoesNotExist / Exists',
      {
        affinity: affinity({
          matchExpressions: [
            { key: 'gpu', operator: 'DoesNotExist' },
            { key: 'gen', operator: 'Exists' },
          ],
        }),
        tolerations: tolerateDedicated,
      },
      null,
    ],
    [
      'affinity Gt',
      {
        affinity: affinity({ matchExpressions: [{ key: 'gen', operator: 'Gt', values: ['6'] }] }),
        tolerations: tolerateDedicated,
      },
      /required node affinity/,
    ],
    [
      'affinity matchFields metadata.name',
      {
        affinity: affinity({ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] }),
        tolerations: tolerateDedicated,
      },
      null,
    ],
    [
      'an empty term matches nothing',
      { affinity: affinity({}), tolerations: tolerateDedicated },
      /required node affinity/,
    ],
  ])('%s', (_what, spec, want) => {
    const got = placementProblem(spec, node);
    if (want === null) expect(got).toBeNull();
    else expect(got).toMatch(want);
  });

  it('tolerates the taints the DaemonSet controller adds tolerations for', () => {
    expect(
      placementProblem(
        {},
        {
          name: 'n',
          taints: [
            { key: 'node.kubernetes.io/not-ready', effect: 'NoExecute' },
            { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' },
          ],
        },
      ),
    ).toBeNull();
  });
});
