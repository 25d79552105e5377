// End to end: a pod whose annotation Istio 1.17.8 would reject (or whose proxy uid the kernel would)
// fails its CNI ADD through the real chain (bridge + loopback + the built shim + the built agent),
// the error names the setting and the value, and the pod's namespace holds no rule at all. Root.
import { afterEach, describe, expect, it } from 'vitest';
import { CniPluginError } from '../../src/runtime/cni-exec.js';
import { inNetns } from '../helpers/netns.js';
import { World, type PodSpec } from '../e2e/helpers.js';

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
});

/** ADDs the pod through the chain; returns the CNI error message and the sandbox's nft ruleset. */
async function failedAdd(
  pod: Omit<PodSpec, 'namespace' | 'name'>,
): Promise<{ message: string; ruleset: string; ready: number }> {
  const w = new World();
  worlds.push(w);
  w.addPod({ namespace: 'shop', name: 'bad', ...pod });
  await w.startAgent();
  const s = w.sandbox({ namespace: 'shop', name: 'bad' });
  const e = await s.add().then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CniPluginError);
  return {
    message: (e as Error).message,
    ruleset: inNetns(s.netnsName, 'nft', ['list', 'ruleset']).trim(),
    ready: (await w.admin('/readyz')).status,
  };
}

describe('a pod with an invalid annotation', () => {
  it.each([
    ['traffic.sidecar.istio.io/excludeOutboundIPRanges', '*'],
    ['traffic.sidecar.istio.io/includeInboundPorts', '80,,90'],
    ['sidecar.istio.io/interceptionMode', 'tproxy'],
  ])('%s=%j fails ADD naming it, and nothing is programmed', async (annotation, value) => {
    const r = await failedAdd({ annotations: { [annotation]: value } });
    expect(r.message).toContain(`${annotation}=${JSON.stringify(value)}`);
    expect(r.ruleset).toBe('');
    expect(r.ready).toBe(200);
  });
});

describe('a pod whose istio-proxy runs as uid 4294967295 ((uid_t)-1)', () => {
  it('fails ADD naming the container field and the value instead of reaching the kernel', async () => {
    const r = await failedAdd({ proxyUid: 4294967295 });
    expect(r.message).toContain('spec.containers[istio-proxy].securityContext.runAsUser=4294967295');
    expect(r.message).not.toMatch(/EINVAL/);
    expect(r.ruleset).toBe('');
  });
});
