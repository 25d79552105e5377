// The owned conflist end to end (ownedConfigFileName, istio-cni's istioOwnedCNIConfig): `meshcni-agent serve`
// writes its own file that sorts first, the primary's plug-ins plus meshcni, and never touches the primary's
// file; pods run through exactly the file the runtime would load, with real bridge/host-local/loopback/portmap
// plug-ins; when the primary rewrites its file while meshcni runs, meshcni's file follows; shutdown removes
// only meshcni's file. Root.
import { mkdirSync, readFileSync, readdirSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { selectPrimaryConfig } from '../../src/install/installer.js';
import type { ConfList } from '../../src/runtime/cni-exec.js';
import { Sandbox } from '../../src/runtime/sandbox.js';
import { until } from '../helpers/wait.js';
import { World, saveIn } from './helpers.js';

const OWNED = '02-meshcni.conflist';
const worlds: World[] = [];
const boxes: Sandbox[] = [];
afterEach(async () => {
  for (const b of boxes.splice(0)) await b.destroy().catch(() => undefined);
  for (const w of worlds.splice(0)) await w.cleanup();
});

describe('serve with an owned config', () => {
  it('writes its own first-sorting conflist, follows the primary as it rewrites its file, and removes only its own', async () => {
    const w = new World();
    worlds.push(w);
    const confDir = join(w.dir, 'net.d');
    const binDir = join(w.dir, 'bin');
    mkdirSync(confDir);
    mkdirSync(binDir);
    const primaryPath = join(confDir, '10-bridge.conflist');
    const bridge = {
      type: 'bridge',
      bridge: w.bridge,
      isGateway: true,
      ipam: { type: 'host-local', ranges: [[{ subnet: w.subnet }]], dataDir: join(w.dir, 'ipam') },
    };
    const primaryText = (plugins: unknown[]): string =>
      `${JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', plugins }, null, 2)}\n`;
    const original = primaryText([bridge, { type: 'loopback' }]);
    writeFileSync(primaryPath, original);

    const agent = new World({
      install: true,
      uninstallOnShutdown: true,
      cniConfDir: confDir,
      cniBinDir: binDir,
      ownedConfigFileName: OWNED,
    });
    worlds.push(agent);
    agent.addPod({
      namespace: 'shop',
      name: 'web',
      annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '22' },
    });
    await agent.startAgent();

    // The runtime loads the first file: meshcni's. The primary's file is byte for byte what the primary wrote.
    expect(await selectPrimaryConfig(confDir)).toBe(OWNED);
    expect(readFileSync(primaryPath, 'utf8')).toBe(original);
    const owned = (): ConfList => JSON.parse(readFileSync(join(confDir, OWNED), 'utf8')) as ConfList;
    expect(owned()).toMatchObject({ cniVersion: '1.0.0', name: 'podnet' });
    expect(owned().plugins.map((p) => p.type)).toEqual(['bridge', 'loopback', 'meshcni']);

    const pod = async (n: number): Promise<Sandbox> => {
      const box = new Sandbox(
        `own${process.pid % 10000}x${n}`,
        { namespace: 'shop', name: 'web' },
        owned(),
        join(binDir, 'meshcni'),
      );
      boxes.push(box);
      box.create();
      await box.add();
      return box;
    };
    const first = await pod(1);
    expect(saveIn(first.netnsName)).toContain('-A ISTIO_INBOUND -p tcp -m tcp --dport 22 -j RETURN');

    // The primary rewrites its file (temp + rename, as CNI daemons do) with one more plug-in.
    const rewritten = primaryText([
      bridge,
      { type: 'loopback' },
      { type: 'portmap', capabilities: { portMappings: true } },
    ]);
    writeFileSync(join(confDir, '.primary-tmp'), rewritten);
    renameSync(join(confDir, '.primary-tmp'), primaryPath);
    await until(() => owned().plugins.length === 4, 10_000, 25);
    expect(owned().plugins.map((p) => p.type)).toEqual(['bridge', 'loopback', 'portmap', 'meshcni']);
    expect(readFileSync(primaryPath, 'utf8')).toBe(rewritten);
    const second = await pod(2);
    expect(saveIn(second.netnsName)).toContain('-A ISTIO_INBOUND -p tcp -m tcp --dport 22 -j RETURN');

    for (const b of boxes.splice(0)) await b.destroy();
    expect(await agent.stopAgent('SIGTERM')).toBe(0);
    expect(readdirSync(confDir).filter((f) => !f.startsWith('.'))).toEqual(['10-bridge.conflist']);
    expect(readFileSync(primaryPath, 'utf8')).toBe(rewritten);
  });
});
