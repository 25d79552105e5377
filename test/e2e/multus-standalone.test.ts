// Standalone (Multus) mode end to end (chained: false, the chart's provider: multus): `meshcni-agent serve` writes
// meshcni's own network config and nothing else; a pod gets its primary network from real bridge/host-local/
// loopback plug-ins, then meshcni's network the way Multus runs an additional network (its own invocation,
// CNI_IFNAME net1, no prevResult) — and is captured. The primary rewriting its file changes nothing of ours;
// shutdown removes only meshcni's file. Root.
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runConfList, type CniInvocation } from '../../src/runtime/cni-exec.js';
import { Sandbox, podConfList } from '../../src/runtime/sandbox.js';
import { World, saveIn } from './helpers.js';

const worlds: World[] = [];
const boxes: Sandbox[] = [];
afterEach(async () => {
  for (const b of boxes.splice(0)) await b.destroy().catch(() => undefined);
  for (const w of worlds.splice(0)) await w.cleanup();
});

describe('serve with chained: false (Multus)', () => {
  it("writes only its own network, which captures a pod as Multus's additional network, and removes only it", async () => {
    const net = new World();
    worlds.push(net);
    const confDir = join(net.dir, 'multus-net.d');
    const binDir = join(net.dir, 'bin');
    mkdirSync(confDir);
    mkdirSync(binDir);
    const primary = podConfList({ bridge: net.bridge, subnet: net.subnet, ipamDataDir: join(net.dir, 'ipam') }, null);
    const primaryPath = join(confDir, '10-bridge.conflist');
    const primaryText = `${JSON.stringify(primary, null, 2)}\n`;
    writeFileSync(primaryPath, primaryText);

    const agent = new World({
      install: true,
      uninstallOnShutdown: true,
      cniConfDir: confDir,
      cniBinDir: binDir,
      chained: false,
      cniConfFileName: 'meshcni.conf',
    });
    worlds.push(agent);
    agent.addPod({
      namespace: 'shop',
      name: 'web',
      annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '22' },
    });
    await agent.startAgent();

    expect(
      readdirSync(confDir)
        .filter((f) => !f.startsWith('.'))
        .sort(),
    ).toEqual(['10-bridge.conflist', 'meshcni.conf']);
    expect(readFileSync(primaryPath, 'utf8')).toBe(primaryText);
    const own = JSON.parse(readFileSync(join(confDir, 'meshcni.conf'), 'utf8')) as Record<string, unknown>;
    expect(own).toMatchObject({ cniVersion: '0.3.1', name: 'meshcni', type: 'meshcni', socketPath: agent.socketPath });

    // The pod's default network, as the runtime (through Multus) runs it first.
    const box = new Sandbox(
      `mus${process.pid % 10000}`,
      { namespace: 'shop', name: 'web' },
      primary,
      join(binDir, 'meshcni'),
    );
    boxes.push(box);
    box.create();
    await box.add();
    expect(saveIn(box.netnsName)).not.toContain('ISTIO');
    // Then meshcni's network, as Multus runs an additional one: a lone config is a one-plug-in list (libcni).
    const { cniVersion, name, ...plugin } = own;
    const inv: CniInvocation = {
      command: 'ADD',
      containerId: box.containerId,
      netns: box.netnsPath,
      ifName: 'net1',
      args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web',
      path: ['/usr/lib/cni'],
    };
    const list = { cniVersion: String(cniVersion), name: String(name), plugins: [plugin] };
    const locate = (): string => join(binDir, 'meshcni');
    expect(await runConfList(list, inv, locate)).toEqual({ cniVersion: '0.3.1' });
    expect(saveIn(box.netnsName)).toContain('-A ISTIO_INBOUND -p tcp -m tcp --dport 22 -j RETURN');

    // The primary rewrites its file while meshcni runs: nothing of meshcni's moves into it.
    const rewritten = primaryText.replace('"hairpinMode": false', '"hairpinMode": true');
    writeFileSync(join(confDir, '.tmp'), rewritten);
    renameSync(join(confDir, '.tmp'), primaryPath);
    await new Promise((r) => setTimeout(r, 500));
    expect(readFileSync(primaryPath, 'utf8')).toBe(rewritten);
    expect(JSON.parse(readFileSync(join(confDir, 'meshcni.conf'), 'utf8'))).toEqual(own);

    await runConfList(list, { ...inv, command: 'DEL' }, locate);
    expect(await agent.stopAgent('SIGTERM')).toBe(0);
    expect(readdirSync(confDir).filter((f) => !f.startsWith('.'))).toEqual(['10-bridge.conflist']);
    expect(readFileSync(primaryPath, 'utf8')).toBe(rewritten);
  });
});
