// The node lifecycle end to end: `meshcni-agent serve` with install on chains itself into a bridge
// conflist in a temp CNI conf dir and copies the shim into a temp bin dir; a pod is then set up by
// running exactly the conflist the runtime would read; shutdown removes every trace. Root.
import { mkdirSync, readFileSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConfList } from '../../src/runtime/cni-exec.js';
import { Sandbox } from '../../src/runtime/sandbox.js';
import { NetnsPool } from '../helpers/netns.js';
import { until } from '../helpers/wait.js';
import { World, saveIn } from './helpers.js';

const worlds: World[] = [];
const boxes: Sandbox[] = [];
const pool = new NetnsPool('ins');
afterEach(async () => {
  for (const b of boxes.splice(0)) await b.destroy().catch(() => undefined);
  for (const w of worlds.splice(0)) await w.cleanup();
  pool.cleanup();
});

describe('serve with install', () => {
  it('chains into the primary conflist, serves pods through it, and leaves it byte-identical on shutdown', async () => {
    const probe = new World();
    worlds.push(probe);
    const confDir = join(probe.dir, 'net.d');
    const binDir = join(probe.dir, 'bin');
    mkdirSync(confDir);
    mkdirSync(binDir);
    const primary = join(confDir, '10-bridge.conflist');
    const original = `${JSON.stringify(
      {
        cniVersion: '1.0.0',
        name: 'podnet',
        plugins: [
          {
            type: 'bridge',
            bridge: probe.bridge,
            isGateway: true,
            ipam: { type: 'host-local', ranges: [[{ subnet: probe.subnet }]], dataDir: join(probe.dir, 'ipam') },
          },
          { type: 'loopback' },
        ],
      },
      null,
      2,
    )}\n`;
    writeFileSync(primary, original);
    const w = new World({ install: true, uninstallOnShutdown: true, cniConfDir: confDir, cniBinDir: binDir });
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'web', annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '22' } });
    await w.startAgent();

    const installed = JSON.parse(readFileSync(primary, 'utf8')) as ConfList;
    expect(installed.plugins.map((p) => p.type)).toEqual(['bridge', 'loopback', 'meshcni']);
    expect(installed.plugins[2]).toMatchObject({ socketPath: w.socketPath });
    const shim = join(binDir, 'meshcni');
    expect(statSync(shim).mode & 0o777).toBe(0o755);

    // The runtime's view: read the conflist from disk, find plug-ins in the bin dir (meshcni) and
    // the upstream dir (bridge, loopback).
    const box = new Sandbox(`ins${process.pid % 10000}`, { namespace: 'shop', name: 'web' }, installed, shim);
    boxes.push(box);
    box.create();
    await box.add();
    expect(saveIn(box.netnsName)).toContain('-A ISTIO_INBOUND -p tcp -m tcp --dport 22 -j RETURN');

    // The primary CNI rewrites its file: meshcni is inserted again, once.
    writeFileSync(primary, original);
    await until(() => (readFileSync(primary, 'utf8').match(/"meshcni"/g) ?? []).length === 1, 10_000, 25);
    await new Promise((r) => setTimeout(r, 300));
    expect((readFileSync(primary, 'utf8').match(/"type": ?"meshcni"/g) ?? []).length).toBe(1);

    await box.destroy();
    boxes.splice(0);
    expect(await w.stopAgent('SIGTERM')).toBe(0);
    expect(readFileSync(primary, 'utf8')).toBe(original);
    // Unchained, the shim stays to answer DEL of pods added while chained (uninstall --purge removes it).
    expect(existsSync(shim)).toBe(true);
    expect(readdirSync(confDir).filter((f) => !f.startsWith('.'))).toEqual(['10-bridge.conflist']);
  });
});
