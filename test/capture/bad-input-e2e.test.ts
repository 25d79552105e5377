// End to end: a pod whose annotation Istio 1.17.8 would reject fails its CNI ADD through the real
// chain (bridge + loopback + the built shim + the built agent), the error names the annotation and
// the value, and the pod's namespace holds no rule at all. Root.
import { afterEach, describe, expect, it } from 'vitest';
import { CniPluginError } from '../../src/runtime/cni-exec.js';
import { inNetns } from '../helpers/netns.js';
import { World } from '../e2e/helpers.js';

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
});

describe('a pod with an invalid annotation', () => {
  it.each([
    ['traffic.sidecar.istio.io/excludeOutboundIPRanges', '*'],
    ['traffic.sidecar.istio.io/includeInboundPorts', '80,,90'],
    ['sidecar.istio.io/interceptionMode', 'tproxy'],
  ])('%s=%j fails ADD naming it, and nothing is programmed', async (annotation, value) => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'bad', annotations: { [annotation]: value } });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'shop', name: 'bad' });
    const e = await s.add().then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CniPluginError);
    expect((e as Error).message).toContain(`${annotation}=${JSON.stringify(value)}`);
    expect(inNetns(s.netnsName, 'nft', ['list', 'ruleset']).trim()).toBe('');
    expect((await w.admin('/readyz')).status).toBe(200);
  });
});

describe('a pod whose istio-proxy runs as uid 4294967295 ((uid_t)-1)', () => {
  it('fails ADD naming the container field and the value instead of reaching the kernel', async () => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'uid', proxyUid: 4294967295 });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'shop', name: 'uid' });
    const e = await s.add().then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CniPluginError);
    expect((e as Error).message).toContain('spec.containers[istio-proxy].securityContext.runAsUser=4294967295');
    expect((e as Error).message).not.toMatch(/EINVAL/);
    expect(inNetns(s.netnsName, 'nft', ['list', 'ruleset']).trim()).toBe('');
  });
});
