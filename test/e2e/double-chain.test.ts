// One netns ADDed by two chains that both list meshcni (Multus delegate + primary, istio/istio#57432):
// real conflists run in sequence on the same sandbox, the built agent behind the built shim. Root.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runConfList, type CniInvocation, type ConfList } from '../../src/runtime/cni-exec.js';
import { removeBridge, UPSTREAM_CNI_DIR, type Sandbox } from '../../src/runtime/sandbox.js';
import { SHIM, World, nftRuleset } from './helpers.js';

const worlds: World[] = [];
const bridges: string[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
  for (const b of bridges.splice(0)) removeBridge(b);
});

/** A second network on its own bridge and /24 (one no route on this machine uses yet), ending in meshcni. */
function secondChain(w: World): ConfList {
  const routes = spawnSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' }).stdout;
  let n = (process.pid * 13) % 200;
  while (routes.includes(`10.247.${n}.0/24`)) n = (n + 1) % 200;
  const bridge = `mcnd${process.pid % 100000}`.slice(0, 15);
  bridges.push(bridge);
  return {
    cniVersion: '1.0.0',
    name: 'second-net',
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: `10.247.${n}.0/24` }]], dataDir: join(w.dir, 'ipam2') },
      },
      { type: 'meshcni', ...w.entry() },
    ],
  };
}

const locate = (t: string): string => (t === 'meshcni' ? SHIM : join(UPSTREAM_CNI_DIR, t));
/** The runtime's call for the second chain's attachment (net1) of the sandbox's pod. */
const onNet1 = (s: Sandbox, command: CniInvocation['command']): CniInvocation => ({
  command,
  containerId: s.containerId,
  netns: s.netnsPath,
  ifName: 'net1',
  args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web',
  path: [UPSTREAM_CNI_DIR],
});
/** The ruleset with handles: a replace gives every rule a new handle, so equal text means untouched. */
const withHandles = (netns: string): string =>
  spawnSync('ip', ['netns', 'exec', netns, 'nft', '-a', 'list', 'ruleset'], { encoding: 'utf8' }).stdout;

describe('the same netns ADDed by two chains', () => {
  it('keeps one ruleset, skips the second replace, and survives DEL and CHECK from either chain', async () => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'web' });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    await s.add(); // chain 1: bridge + loopback + meshcni on eth0
    const first = withHandles(s.netnsName);
    expect(first).toMatch(/ISTIO_OUTPUT|istio/i);
    const chain2 = secondChain(w);
    const inv = (command: CniInvocation['command']): CniInvocation => onNet1(s, command);
    const r2 = await runConfList(chain2, inv('ADD'), locate); // chain 2 on net1: must succeed too
    expect(JSON.stringify(r2)).toContain('10.247.');
    expect(withHandles(s.netnsName)).toBe(first); // same rules, same handles: not replaced, not doubled
    await w.waitForLog(/pod already captured; rules left as they are/);
    await s.check();
    await runConfList(chain2, inv('CHECK'), locate, r2);
    // DEL from the second chain: the pod lives on with its rules and stays tracked.
    await runConfList(chain2, inv('DEL'), locate, r2);
    const record = join(w.stateDir, 'pods', `${s.containerId}.json`);
    expect(existsSync(record)).toBe(true);
    expect(withHandles(s.netnsName)).toBe(first);
    await s.check();
    await s.destroy();
    expect(existsSync(record)).toBe(false);
  });

  it('re-applies on a second ADD when the rules in the netns were changed since', async () => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'web' });
    await w.startAgent();
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    await s.add();
    const expected = nftRuleset(s.netnsName);
    spawnSync('ip', ['netns', 'exec', s.netnsName, 'nft', 'flush', 'ruleset']);
    await runConfList(secondChain(w), onNet1(s, 'ADD'), locate);
    expect(nftRuleset(s.netnsName)).toBe(expected);
    await s.check();
  });
});
