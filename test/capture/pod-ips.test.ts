// Whether IPv6 rules are written: Istio 1.30.3 decides from the pod's own addresses (its getLocalIP),
// 1.17.8 has no dual stack and meshcni's documented ISTIO_DUAL_STACK decides. The pod's IPs come
// from its status or, at ADD, from the runtime's result (test/agent/prev-result.test.ts).
import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG } from '../../src/capture/config.js';
import { globalAddressFamilies, podFromObject, withPodIps } from '../../src/capture/pod.js';
import { redirectSettings } from '../../src/capture/settings.js';

const pod = (
  ips: string[] | undefined,
  dual?: string,
  image = 'docker.io/istio/proxyv2:1.30.3',
): Record<string, unknown> => ({
  metadata: { name: 'web', namespace: 'shop' },
  spec: {
    containers: [
      { name: 'app' },
      { name: 'istio-proxy', image, env: dual === undefined ? [] : [{ name: 'ISTIO_DUAL_STACK', value: dual }] },
    ],
  },
  ...(ips ? { status: { podIPs: ips.map((ip) => ({ ip })) } } : {}),
});
const ipv6 = (obj: Record<string, unknown>): boolean =>
  redirectSettings(podFromObject(obj), { ...DEFAULT_CAPTURE_CONFIG, istioVersion: 'auto' }).dualStack;

describe('IPv6 rules with the 1.30 rules: from the pod addresses, as getLocalIP', () => {
  it.each([
    ['an IPv6-only pod, no ISTIO_DUAL_STACK', ['fd00::5'], undefined, true],
    ['an IPv4-only pod with ISTIO_DUAL_STACK=true', ['10.0.0.5'], 'true', false],
    ['a dual-stack pod with ISTIO_DUAL_STACK=true', ['10.0.0.5', 'fd00::5'], 'true', true],
    ['a dual-stack pod without it: the first address decides', ['10.0.0.5', 'fd00::5'], undefined, false],
    ['IPv6 first without it', ['fd00::5', '10.0.0.5'], undefined, true],
    ['link-local and loopback addresses do not count', ['fe80::1', '127.0.0.1', '10.0.0.5'], undefined, false],
    ['an IPv4-mapped address counts as IPv4', ['::ffff:10.0.0.5'], undefined, false],
    ['no addresses known: the flag decides', undefined, 'true', true],
  ])('%s', (_what, ips, dual, want) => {
    expect(ipv6(pod(ips, dual))).toBe(want);
  });

  it('the 1.17 rules ignore the addresses: ISTIO_DUAL_STACK decides', () => {
    const old = 'docker.io/istio/proxyv2:1.17.8';
    expect(ipv6(pod(['10.0.0.5'], 'true', old))).toBe(true);
    expect(ipv6(pod(['fd00::5'], undefined, old))).toBe(false);
  });

  it('a status address that is no IP address is refused, naming it', () => {
    expect(() => podFromObject(pod(['10.0.0.5', 'eth0']))).toThrow(/status\.podIPs\[1\]\.ip.*eth0.*not an IP address/);
    expect(() => podFromObject({ ...pod(undefined), status: { podIP: 42 } })).toThrow(/status\.podIP.*not an IP/);
  });

  it('withPodIps sets the runtime’s addresses over the API’s, leaving the rest of the status', () => {
    const obj = withPodIps({ ...pod(['10.0.0.9']), status: { phase: 'Running', podIPs: [{ ip: '10.0.0.9' }] } }, [
      'fd00::7',
    ]);
    expect(obj.status).toEqual({ phase: 'Running', podIPs: [{ ip: 'fd00::7' }] });
    expect(podFromObject(obj).podIps).toEqual(['fd00::7']);
  });

  it('globalAddressFamilies skips loopback, link-local and link-local multicast', () => {
    expect(globalAddressFamilies(['127.0.0.1', '169.254.1.1', '224.0.0.5', 'ff02::1', '::1', 'fe80::1'])).toEqual([]);
    expect(globalAddressFamilies(['10.0.0.1', '2001:db8::1', '::FFFF:192.0.2.1'])).toEqual([4, 6, 4]);
  });
});

describe('a loopback include range written IPv4-mapped (::ffff:127.0.0.1)', () => {
  const settings = (image: string) =>
    redirectSettings(
      podFromObject({
        metadata: {
          name: 'web',
          namespace: 'shop',
          annotations: { 'traffic.sidecar.istio.io/includeOutboundIPRanges': '::ffff:127.0.0.1/128,10.0.0.0/8' },
        },
        spec: { containers: [{ name: 'app' }, { name: 'istio-proxy', image }] },
      }),
      { ...DEFAULT_CAPTURE_CONFIG, istioVersion: 'auto' },
    );

  it('is a loopback range for 1.30.3 (its Go unmaps it), not for 1.17.8 (its Go did not)', () => {
    expect(settings('docker.io/istio/proxyv2:1.30.3').includeOutboundLoopback).toBe(true);
    expect(settings('docker.io/istio/proxyv2:1.17.8').includeOutboundLoopback).toBe(false);
  });
});
