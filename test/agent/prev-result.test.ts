// The pod's IPs in the previous plug-in's result, which decide Istio 1.30.3's IPv6 rules at ADD:
// read leniently (an unreadable list means "unknown", never a failed ADD for a pod without capture).
import { describe, expect, it } from 'vitest';
import { prevResultIps } from '../../src/agent/cni.js';

describe("the runtime's result: prevResultIps", () => {
  it('reads ips[].address in order, prefix lengths dropped', () => {
    expect(
      prevResultIps({ ips: [{ address: '10.88.0.5/24' }, { address: 'fd00::5/64', gateway: 'fd00::1' }] }),
    ).toEqual(['10.88.0.5', 'fd00::5']);
  });

  it.each([
    ['no result', undefined],
    ['no ips', { interfaces: [] }],
    ['an empty list', { ips: [] }],
    ['an entry that is no address', { ips: [{ address: '10.88.0.5/24' }, { address: 'eth0/24' }] }],
    ['an entry without an address', { ips: [{ gateway: '10.88.0.1' }] }],
    ['ips not a list', { ips: '10.88.0.5/24' }],
  ])('%s → unknown (the flag decides)', (_what, prev) => {
    expect(prevResultIps(prev as Record<string, unknown> | undefined)).toBeUndefined();
  });
});
