// The istioVersion setting: which Istio release's rule set a pod gets. Validated at the edge; `auto`
// reads the proxy image's tag; the plan (and its cache key) follow the choice.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG, parseCaptureConfig, type CaptureConfig } from '../../src/capture/config.js';
import { planKey, planRules } from '../../src/capture/plan.js';
import { istioRulesFor } from '../../src/capture/settings.js';
import { parseSettings } from '../../src/agent/config.js';
import { buildPlan } from '../../src/agent/plan/build.js';

const pod = (image: string): Record<string, unknown> => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', namespace: 'shop', annotations: {} },
  spec: {
    containers: [
      { name: 'app', image: 'example/app' },
      { name: 'istio-proxy', image },
    ],
  },
});
const rulesOf = (config: CaptureConfig, image: string): string => {
  const p = planRules(pod(image), config);
  if (!p.capture) throw new Error(p.reason);
  return p.settings.istioRules;
};

describe('istioVersion in the config file', () => {
  it('defaults to 1.17, the seed rule set', () => {
    expect(parseCaptureConfig({}).istioVersion).toBe('1.17');
    expect(DEFAULT_CAPTURE_CONFIG.istioVersion).toBe('1.17');
  });

  it.each(['1.17', '1.30', 'auto'])('accepts %s', (v) => {
    expect(parseCaptureConfig({ istioVersion: v }).istioVersion).toBe(v);
    expect(parseSettings({ istioVersion: v }, 'test').capture.istioVersion).toBe(v);
  });

  it.each([
    ['an unquoted YAML 1.30, read as a number', 1.3],
    ['a release not supported', '1.22'],
    ['a full release', '1.30.3'],
    ['the wrong case', 'AUTO'],
    ['empty', ''],
  ])('rejects %s, naming the key and the value', (_what, v) => {
    const want = `istioVersion=${JSON.stringify(v)}: must be one of 1.17, 1.30, auto`;
    expect(() => parseCaptureConfig({ istioVersion: v })).toThrow(want);
  });
});

describe('auto: the rule set from the proxy image tag', () => {
  it.each([
    ['docker.io/istio/proxyv2:1.30.3', '1.30'],
    ['gcr.io/istio-release/proxyv2:1.30.0-distroless', '1.30'],
    ['registry.local:5000/istio/proxyv2:1.30.3', '1.30'],
    ['docker.io/istio/proxyv2:1.17.8', '1.17'],
    ['docker.io/istio/proxyv2:1.24.6', '1.17'],
    ['docker.io/istio/proxyv2:1.18.0', '1.17'],
    ['docker.io/istio/proxyv2:1.25.0', '1.30'],
    ['docker.io/istio/proxyv2:1.28.1-distroless', '1.30'],
    ['docker.io/istio/proxyv2:1.29.6', '1.30'],
    ['docker.io/istio/proxyv2:1.31.0', '1.17'],
    ['docker.io/istio/proxyv2:1.025.0', '1.17'],
    ['docker.io/istio/proxyv2:1.300.0', '1.17'],
    ['docker.io/istio/proxyv2:11.30.0', '1.17'],
    ['docker.io/istio/proxyv2:1.30', '1.17'],
    ['docker.io/istio/proxyv2:latest', '1.17'],
    ['docker.io/istio/proxyv2', '1.17'],
    ['registry.local:5000/istio/proxyv2', '1.17'],
    [`docker.io/istio/proxyv2@sha256:${'a'.repeat(64)}`, '1.17'],
    [`docker.io/istio/proxyv2:1.30.3@sha256:${'a'.repeat(64)}`, '1.30'],
  ])('%s → %s rules', (image, want) => {
    expect(istioRulesFor('auto', image)).toBe(want);
    expect(rulesOf({ ...DEFAULT_CAPTURE_CONFIG, istioVersion: 'auto' }, image)).toBe(want);
  });

  it('no image → the default', () => expect(istioRulesFor('auto', undefined)).toBe('1.17'));

  it('a fixed version ignores the image', () => {
    expect(rulesOf({ ...DEFAULT_CAPTURE_CONFIG, istioVersion: '1.30' }, 'docker.io/istio/proxyv2:1.17.8')).toBe('1.30');
    expect(rulesOf(DEFAULT_CAPTURE_CONFIG, 'docker.io/istio/proxyv2:1.30.3')).toBe('1.17');
  });
});

describe('the plan follows the chosen rule set', () => {
  it.each([
    ['1.17', '-A OUTPUT -p tcp -j ISTIO_OUTPUT', '! --dport 15008'],
    ['1.30', '-A OUTPUT -j ISTIO_OUTPUT', '-A OUTPUT -p tcp -j ISTIO_OUTPUT'],
  ] as const)('%s rules contain %j and not %j', (v, has, hasNot) => {
    const p = planRules(pod('example/proxy'), { ...DEFAULT_CAPTURE_CONFIG, istioVersion: v });
    if (!p.capture) throw new Error(p.reason);
    expect(p.text).toContain(has);
    expect(p.text).not.toContain(hasNot);
  });

  it.each([
    ['docker.io/istio/proxyv2:1.30.3', '1.30'],
    ['docker.io/istio/proxyv2:1.17.8', '1.17'],
  ])('the plan summary the agent logs names the rule set (auto, %s → %s)', (image, want) => {
    const p = buildPlan(pod(image), { ...DEFAULT_CAPTURE_CONFIG, istioVersion: 'auto' });
    if (!p.capture) throw new Error('expected capture');
    expect(p.summary.istioRules).toBe(want);
  });

  it('pods whose proxy images differ in release have different plan keys', () => {
    expect(planKey(pod('docker.io/istio/proxyv2:1.30.3'))).not.toBe(planKey(pod('docker.io/istio/proxyv2:1.17.8')));
  });
});
