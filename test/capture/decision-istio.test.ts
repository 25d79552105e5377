// Pod selection as Istio's own plug-in makes it (cni/pkg/plugin/plugin.go CmdAdd at 1.17.8 and
// 1.30.3), for pods shaped as today's injector writes them: native sidecars, CNI-mode pods with
// istio-validation, pods that program themselves, gateways, DISABLE_ENVOY, the inject label.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG } from '../../src/capture/config.js';
import { decideCapture } from '../../src/capture/decision.js';
import { planRules, planKey } from '../../src/capture/plan.js';
import { podFromObject } from '../../src/capture/pod.js';

type C = Record<string, unknown>;
const app: C = { name: 'app', image: 'example/app' };
const proxy = (extra: C = {}): C => ({
  name: 'istio-proxy',
  image: 'docker.io/istio/proxyv2:1.30.3',
  args: ['proxy', 'sidecar', '--domain', '$(POD_NAMESPACE).svc.cluster.local'],
  securityContext: { runAsUser: 1337, runAsGroup: 1337 },
  ...extra,
});
const validation: C = {
  name: 'istio-validation',
  image: 'docker.io/istio/proxyv2:1.30.3',
  args: ['istio-iptables', '--run-validation'],
};
const istioInit: C = {
  name: 'istio-init',
  image: 'docker.io/istio/proxyv2:1.30.3',
  args: ['istio-iptables', '-p', '15001'],
};
const STATUS = { 'sidecar.istio.io/status': '{"initContainers":["istio-validation"],"containers":["istio-proxy"]}' };

function pod(spec: C, meta: C = {}): C {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'shop', uid: 'u-1', annotations: STATUS, ...meta },
    spec,
  };
}
const nativeSidecar = (proxyExtra: C = {}): C =>
  pod({ initContainers: [validation, proxy({ restartPolicy: 'Always', ...proxyExtra })], containers: [app] });
const classic = (proxyExtra: C = {}): C => pod({ initContainers: [validation], containers: [app, proxy(proxyExtra)] });

const cfg = DEFAULT_CAPTURE_CONFIG;
const decide = (p: C) => decideCapture(podFromObject(p), cfg);

describe('pod selection as Istio does it', () => {
  it.each<[string, C, RegExp | null]>([
    ['a native sidecar (istio-proxy as an init container, restartPolicy Always)', nativeSidecar(), null],
    ['a CNI-mode classic pod (istio-validation + app + istio-proxy)', classic(), null],
    ['a proxy whose args say `proxy sidecar`', classic(), null],
    ['a proxy without args (type unknown: Istio captures)', pod({ containers: [app, { name: 'istio-proxy' }] }), null],
    ['DISABLE_ENVOY=false', classic({ env: [{ name: 'DISABLE_ENVOY', value: 'false' }] }), null],
    [
      'DISABLE_ENVOY that Go cannot parse ("yes": Istio ignores it)',
      classic({ env: [{ name: 'DISABLE_ENVOY', value: 'yes' }] }),
      null,
    ],
    [
      'label inject "true" over annotation "false" (the label wins)',
      pod(
        { containers: [app, proxy()] },
        {
          labels: { 'sidecar.istio.io/inject': 'true' },
          annotations: { ...STATUS, 'sidecar.istio.io/inject': 'false' },
        },
      ),
      null,
    ],
    [
      'a pod with its own istio-init',
      pod({ initContainers: [istioInit], containers: [app, proxy()] }),
      /own istio-init init container/,
    ],
    [
      'a gateway (`proxy router`) with a second container',
      pod({ containers: [proxy({ args: ['proxy', 'router'] }), app] }),
      /"router" proxy, not a sidecar/,
    ],
    ['a native-sidecar gateway', nativeSidecar({ args: ['proxy', 'router'] }), /"router" proxy, not a sidecar/],
    [
      'DISABLE_ENVOY=true on the proxy',
      classic({ env: [{ name: 'DISABLE_ENVOY', value: 'true' }] }),
      /DISABLE_ENVOY=true/,
    ],
    [
      'DISABLE_ENVOY=1 on a native sidecar',
      nativeSidecar({ env: [{ name: 'DISABLE_ENVOY', value: '1' }] }),
      /DISABLE_ENVOY=1/,
    ],
    [
      'label inject "false"',
      pod({ containers: [app, proxy()] }, { labels: { 'sidecar.istio.io/inject': 'false' } }),
      /label sidecar\.istio\.io\/inject is "false"/,
    ],
    [
      'label inject "F" (Go false)',
      pod({ containers: [app, proxy()] }, { labels: { 'sidecar.istio.io/inject': 'F' } }),
      /label .* is "F"/,
    ],
    [
      'annotation inject "false" without a label',
      pod({ containers: [app, proxy()] }, { annotations: { ...STATUS, 'sidecar.istio.io/inject': 'false' } }),
      /annotation sidecar\.istio\.io\/inject is "false"/,
    ],
    ['a hostNetwork pod', pod({ hostNetwork: true, containers: [app, proxy()] }), /hostNetwork/],
    [
      'a native sidecar alone',
      pod({ initContainers: [proxy({ restartPolicy: 'Always' })], containers: [] }),
      /only 1 container/,
    ],
    [
      'a pod whose istio-proxy is neither container nor init container',
      pod({ initContainers: [validation], containers: [app, { name: 'logger' }] }),
      /no container named istio-proxy/,
    ],
  ])('%s', (_name, p, skip) => {
    const d = decide(p);
    if (skip === null) expect(d).toEqual({ capture: true });
    else {
      expect(d.capture).toBe(false);
      if (!d.capture) expect(d.reason).toMatch(skip);
    }
  });

  it("reads a native sidecar's env and ids for the rules, as it does a container's", () => {
    const env = [{ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' }];
    const ids = { securityContext: { runAsUser: 2000, runAsGroup: 3000 } };
    const a = planRules(nativeSidecar({ env, ...ids }), cfg);
    const b = planRules(classic({ env, ...ids }), cfg);
    if (!a.capture || !b.capture) throw new Error('both must be captured');
    expect(a.settings.proxyUid).toBe(2000);
    expect(a.settings.proxyGid).toBe(3000);
    expect(a.settings.dnsCapture).toBe(true);
    expect(a.text).toBe(b.text);
  });

  it('gives pods that decide differently different plan keys (the plan cache must not merge them)', () => {
    const pods = [
      classic(),
      nativeSidecar(),
      classic({ args: ['proxy', 'router'] }),
      classic({ env: [{ name: 'DISABLE_ENVOY', value: 'true' }] }),
      pod({ initContainers: [istioInit], containers: [app, proxy()] }),
      pod({ containers: [app, proxy()] }, { labels: { 'sidecar.istio.io/inject': 'false' } }),
      pod({ hostNetwork: true, containers: [app, proxy()] }),
    ];
    const keys = pods.map(planKey);
    expect(new Set(keys).size).toBe(pods.length);
  });

  it.each<[string, C, RegExp]>([
    ['args that are not a list of strings', classic({ args: ['proxy', 7] }), /spec\.containers\[istio-proxy\]\.args/],
    [
      'a native sidecar with a bad runAsUser',
      nativeSidecar({ securityContext: { runAsUser: -1 } }),
      /spec\.initContainers\[istio-proxy\]\.securityContext\.runAsUser/,
    ],
    [
      'initContainers that are not a list',
      pod({ initContainers: { a: 1 }, containers: [app, proxy()] }),
      /spec\.initContainers/,
    ],
    [
      'an init container without a name',
      pod({ initContainers: [{ image: 'x' }], containers: [app, proxy()] }),
      /spec\.initContainers\[0\]\.name/,
    ],
    ['hostNetwork that is not a boolean', pod({ hostNetwork: 'yes', containers: [app, proxy()] }), /spec\.hostNetwork/],
    [
      'an inject label that is not a string',
      pod({ containers: [app, proxy()] }, { labels: { 'sidecar.istio.io/inject': false } }),
      /metadata\.labels\.sidecar\.istio\.io\/inject/,
    ],
  ])('refuses %s, naming the field', (_n, p, field) => {
    expect(() => podFromObject(p)).toThrow(field);
  });
});
