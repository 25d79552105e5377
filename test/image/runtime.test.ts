// The image an operator installs, run the way the Helm chart's DaemonSet runs it (podman options derived
// from `helm template deploy/chart`), on a private node whose pods come from a real containerd through CRI
// RunPodSandbox, exactly as a kubelet makes them. Root; builds the image with scripts/build-image.sh.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Containerd, NodeRoot, installUpstreamPlugins, primaryConfList, run } from '../helpers/containerd.js';
import type { CriClient, PodRef } from '../helpers/cri.js';
import { NetnsPool, inNetns, normaliseSave } from '../helpers/netns.js';
import { configMapData, daemonSetPod, hostPaths, podmanRunArgs } from '../helpers/podman.js';
import { ROOT, podManifest, type PodSpec } from '../e2e/helpers.js';
import { helmTemplate } from '../../scripts/helm.js';
import { CASES_1_30 } from '../conformance/cases-1.30.js';
import { splitBySource } from '../../scripts/render-manifests.js';

const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const DOCUMENTED = {
  'traffic.sidecar.istio.io/excludeInboundPorts': '22',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
};
// The chart rendered with an operator's values (the test's image; istioVersion auto, as for a node in
// an Istio revision upgrade), one file per template, in a temp dir (removed in afterAll).
const rendered = mkdtempSync(join(tmpdir(), 'meshcni-chart-'));
const DAEMONSET = join(rendered, 'daemonset.yaml');
const CONFIGMAP = join(rendered, 'configmap.yaml');
/** Standalone mode: where the test mounts its pod manifests (the manifest runs against the API server). */
const PODS_MOUNT = '/var/lib/meshcni-test/pods';

const tag = `${process.pid}`;
const image = `localhost/meshcni:test-${tag}`;
const agentName = `meshcni-agent-test-${tag}`;
const pool = new NetnsPool('img');
const node = new NodeRoot();
let containerd: Containerd | undefined;
let cri: CriClient;
let agentConfig: Record<string, unknown>;
const sandboxes: string[] = [];

const pods: Record<string, PodRef & { spec: PodSpec }> = {
  web: {
    namespace: 'shop',
    name: 'web',
    uid: `uid-web-${tag}`,
    spec: { namespace: 'shop', name: 'web', annotations: DOCUMENTED },
  },
  plain: {
    namespace: 'shop',
    name: 'plain',
    uid: `uid-plain-${tag}`,
    spec: { namespace: 'shop', name: 'plain', containers: ['app', 'logger'] },
  },
  coredns: {
    namespace: 'kube-system',
    name: 'coredns',
    uid: `uid-dns-${tag}`,
    spec: { namespace: 'kube-system', name: 'coredns', annotations: DOCUMENTED },
  },
  late: {
    namespace: 'shop',
    name: 'late',
    uid: `uid-late-${tag}`,
    spec: { namespace: 'shop', name: 'late', annotations: DOCUMENTED },
  },
  current: {
    namespace: 'shop',
    name: 'current',
    uid: `uid-current-${tag}`,
    spec: { namespace: 'shop', name: 'current', proxyImage: 'docker.io/istio/proxyv2:1.30.3' },
  },
  early: {
    namespace: 'shop',
    name: 'early',
    uid: `uid-early-${tag}`,
    spec: { namespace: 'shop', name: 'early', annotations: DOCUMENTED },
  },
};
let early: { id: string; pid: number; ip: string };

const podman = (args: string[], timeoutMs = 120_000): string =>
  node.exec('podman', ['--network-config-dir', join(node.dir, 'podman-net'), ...args], { timeoutMs });
const agentLog = (): string => {
  const r = spawnSync('nsenter', ['-t', String(node.pid), '-m', '-n', 'podman', 'logs', agentName], {
    encoding: 'utf8',
  });
  return r.stdout + r.stderr;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The node's CNI conf dir and bin dir, as the manifest names them on the host. */
const confDir = (): string => node.hostDir('/etc/cni/net.d');
const binDir = (): string => node.hostDir('/opt/cni/bin');
const chained = (): boolean =>
  readdirSync(confDir()).some(
    (f) =>
      f.endsWith('.conflist') &&
      (JSON.parse(readFileSync(join(confDir(), f), 'utf8')) as { plugins: { type: string }[] }).plugins.some(
        (p) => p.type === 'meshcni',
      ),
  );

/** What the kernel holds in a sandbox's netns, read through its pause process. */
const inSandbox = (pid: number, cmd: string, args: string[]): string =>
  run('nsenter', ['-t', String(pid), '-n', cmd, ...args]);

async function runSandbox(p: PodRef): Promise<{ id: string; pid: number; ip: string }> {
  const id = await cri.runPodSandbox(p);
  sandboxes.push(id);
  const s = await cri.podSandboxStatus(id);
  expect(s.state).toBe('SANDBOX_READY');
  return { id, pid: s.pid, ip: s.ip };
}

async function removeSandbox(id: string): Promise<void> {
  await cri.stopPodSandbox(id);
  await cri.removePodSandbox(id);
  sandboxes.splice(sandboxes.indexOf(id), 1);
}

beforeAll(async () => {
  // The chart names the image the test builds, as an operator's values would (image.repository/tag).
  const chart = helmTemplate({
    'image.repository': image.split(':')[0]!,
    'image.tag': image.split(':')[1]!,
    istioVersion: 'auto',
  });
  for (const [file, text] of splitBySource(chart)) writeFileSync(join(rendered, file), text);
  run('bash', [join(ROOT, 'scripts/build-image.sh')], { timeoutMs: 40 * 60_000, env: { IMAGE: image } });
  await node.start();
  const template = daemonSetPod(DAEMONSET);
  expect(template.containers[0]!.image).toBe(image);
  for (const hp of hostPaths(template)) {
    if (hp.type !== 'DirectoryOrCreate' && hp.type !== 'Directory')
      throw new Error(`hostPath ${hp.path}: type ${hp.type} is not mapped`);
    // The node shares this machine's pid namespace: its /proc already is the node's processes.
    if (hp.path !== '/proc') node.remap(hp.path);
  }
  // The node before meshcni: a bridge primary network and the upstream plug-ins.
  writeFileSync(
    join(confDir(), '10-primary.conflist'),
    primaryConfList('mcnitest0', '10.88.0.0/24', join(node.dir, 'ipam')),
  );
  installUpstreamPlugins(binDir());
  const podsDir = join(node.dir, 'pods');
  mkdirSync(podsDir);
  for (const p of Object.values(pods)) {
    writeFileSync(
      join(podsDir, `${p.namespace}-${p.name}.yaml`),
      podManifest(p.spec).replace(/^( {2}namespace: .*)$/m, `$1\n  uid: ${p.uid}`),
    );
  }
  const data = configMapData(CONFIGMAP, 'meshcni-config');
  agentConfig = parseYaml(data['config.yaml']!) as Record<string, unknown>;
  const configMaps = {
    'meshcni-config': { ...data, 'config.yaml': `${data['config.yaml']!}podsDir: ${PODS_MOUNT}\n` },
  };
  // A pod that predates the agent: made through CRI on the bare primary network, before meshcni runs.
  containerd = new Containerd(node, { cniConfDir: confDir(), cniBinDir: binDir() });
  cri = await containerd.start();
  early = await runSandbox(pods.early!);
  const args = podmanRunArgs(template, {
    container: 'agent',
    image,
    name: agentName,
    nodeName: `node-${tag}`,
    workDir: node.dir,
    configMaps,
    extraMounts: [[podsDir, PODS_MOUNT, true]],
  });
  podman(args);
  const deadline = Date.now() + 60_000;
  while (!(/meshcni agent ready/.test(agentLog()) && chained())) {
    if (Date.now() > deadline)
      throw new Error(`the agent container did not become ready and chain itself in:\n${agentLog()}`);
    await sleep(250);
  }
}, 45 * 60_000);

afterAll(async () => {
  for (const id of sandboxes.splice(0)) {
    await cri?.stopPodSandbox(id).catch(() => undefined);
    await cri?.removePodSandbox(id).catch(() => undefined);
  }
  if (node.running)
    spawnSync('nsenter', ['-t', String(node.pid), '-m', '-n', 'podman', 'rm', '-f', '-t', '0', agentName], {
      stdio: 'ignore',
    });
  await containerd?.stop();
  await node.stop();
  spawnSync('podman', ['rmi', '-f', image], { stdio: 'ignore' });
  pool.cleanup();
  rmSync(rendered, { recursive: true, force: true });
}, 120_000);

describe('the meshcni image holds only what runs', () => {
  const inImage = (script: string): string =>
    run('podman', [
      'run',
      '--rm',
      '--network',
      'none',
      '--runtime',
      'runc',
      '--ulimit',
      'nofile=1024:1024',
      '--ulimit',
      'nproc=1024:1024',
      '--entrypoint',
      '/bin/sh',
      image,
      '-c',
      script,
    ]);

  it('is the agent, as root: ENTRYPOINT meshcni-agent, CMD serve, user 0', () => {
    const cfg = JSON.parse(run('podman', ['image', 'inspect', image, '--format', '{{json .Config}}'])) as {
      User: string;
      Entrypoint: string[];
      Cmd: string[];
    };
    expect(cfg).toMatchObject({ User: '0:0', Entrypoint: ['meshcni-agent'], Cmd: ['serve'] });
    expect(inImage('readlink -f "$(command -v meshcni-agent)"').trim()).toBe('/app/dist/cli/main.js');
  });

  it('ships the package root the addon loader needs, the addon and the shim, and no sources, toolchain or dev-only packages', () => {
    const top = inImage('ls -A /app').trim().split('\n');
    expect(top.filter((f) => f !== 'prebuilds')).toEqual([
      'binding.gyp',
      'build',
      'dist',
      'node_modules',
      'package.json',
    ]);
    expect(inImage('ls /app/build/Release/meshcni.node /app/prebuilds/*/*.node 2>/dev/null || true')).toMatch(
      /\.node$/m,
    );
    expect(inImage('test -x /app/build/Release/meshcni && echo shim').trim()).toBe('shim');
    expect(inImage('for t in cc gcc make python3 npm; do command -v $t; done; true').trim()).toBe('');
    // The lock file marks what only development needs (dev: true): none of it may ship.
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const dev = Object.entries(lock.packages)
      .filter(([path, p]) => p.dev && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path))
      .map(([path]) => path.slice('node_modules/'.length));
    expect(dev).toContain('vitest');
    const present = inImage(
      `cd /app/node_modules && for d in ${dev.join(' ')}; do [ -e "$d" ] && echo "$d"; done; true`,
    ).trim();
    expect(present).toBe('');
  });
});

describe('the meshcni image under containerd CRI, run as deploy/daemonset.yaml says', () => {
  it('installed itself: the shim in the CNI bin dir and its entry chained after the primary network', () => {
    const list = JSON.parse(readFileSync(join(confDir(), '10-primary.conflist'), 'utf8')) as {
      plugins: { type: string; socketPath?: string }[];
    };
    expect(list.plugins.map((p) => p.type)).toEqual(['bridge', 'meshcni']);
    expect(list.plugins[1]!.socketPath).toBe(agentConfig.socketPath);
    expect(existsSync(join(binDir(), 'meshcni'))).toBe(true);
  });

  it('captures a sidecar pod made by RunPodSandbox exactly as istio-iptables would, and DEL forgets it', async () => {
    const s = await runSandbox(pods.web!);
    expect(s.ip).toMatch(/^10\.88\.0\./);
    const oracle = pool.create();
    inNetns(oracle, 'iptables-nft-restore', [], fixture);
    const want = normaliseSave(inNetns(oracle, 'iptables-nft-save', ['-t', 'nat']));
    expect(normaliseSave(inSandbox(s.pid, 'iptables-nft-save', ['-t', 'nat']))).toBe(want);
    const state = join(node.hostDir('/var/run/meshcni'), 'pods', `${s.id}.json`);
    expect(existsSync(state)).toBe(true);
    await removeSandbox(s.id);
    expect(existsSync(state)).toBe(false);
  });

  it('captured a sandbox made through CRI before the agent started, in place (host /proc at procRoot)', async () => {
    expect(agentConfig.procRoot).toBe('/host/proc');
    expect(early.ip).toMatch(/^10\.88\.0\./);
    const oracle = pool.create();
    inNetns(oracle, 'iptables-nft-restore', [], fixture);
    const want = normaliseSave(inNetns(oracle, 'iptables-nft-save', ['-t', 'nat']));
    const deadline = Date.now() + 30_000;
    while (normaliseSave(inSandbox(early.pid, 'iptables-nft-save', ['-t', 'nat'])) !== want && Date.now() < deadline)
      await sleep(250);
    expect(normaliseSave(inSandbox(early.pid, 'iptables-nft-save', ['-t', 'nat']))).toBe(want);
    expect(agentLog()).toMatch(/captured it in place/);
    const recs = readdirSync(join(node.hostDir('/var/run/meshcni'), 'pods')).map((f) =>
      readFileSync(join(node.hostDir('/var/run/meshcni'), 'pods', f), 'utf8'),
    );
    const rec = recs
      .map((t) => JSON.parse(t) as { name: string; netns: string; netnsId?: string })
      .find((r) => r.name === 'early')!;
    expect(rec).toMatchObject({ netns: '', netnsId: expect.stringMatching(/^\d+:\d+$/) });
  });

  it("serves two Istio releases at once (istioVersion auto): a 1.30.3 proxy's pod gets 1.30.3's rules", async () => {
    // The other pods' proxies are untagged and got 1.17.8's (the tests above); this one's 1.30.3 tag
    // picks the rules of Istio 1.30.3's basic golden (an unannotated pod).
    expect(agentConfig.istioVersion).toBe('auto');
    const basic = CASES_1_30.find((c) => c.golden.endsWith('/basic.txt.golden'))!;
    expect(basic.annotations).toEqual({});
    const s = await runSandbox(pods.current!);
    const oracle = pool.create();
    inNetns(oracle, 'iptables-nft-restore', [], basic.v4);
    const want = normaliseSave(inNetns(oracle, 'iptables-nft-save', []));
    expect(want).toContain('! --dport 15008');
    expect(normaliseSave(inSandbox(s.pid, 'iptables-nft-save', []))).toBe(want);
    expect(agentLog()).toMatch(/"istioRules":"1\.30"/);
    await removeSandbox(s.id);
  });

  it('leaves a pod without an istio-proxy container untouched', async () => {
    const s = await runSandbox(pods.plain!);
    expect(inSandbox(s.pid, 'nft', ['list', 'ruleset']).trim()).toBe('');
    expect(agentLog()).toMatch(/"decision":"skip"/);
    await removeSandbox(s.id);
  });

  it('leaves a pod in an excluded namespace untouched', async () => {
    expect(agentConfig.excludeNamespaces).toContain('kube-system');
    const s = await runSandbox(pods.coredns!);
    expect(inSandbox(s.pid, 'nft', ['list', 'ruleset']).trim()).toBe('');
    await removeSandbox(s.id);
  });

  it('when the agent container stops, leaves the node as uninstallOnShutdown says', async () => {
    podman(['stop', '-t', '30', agentName]);
    const kept = agentConfig.uninstallOnShutdown !== true;
    expect(chained()).toBe(kept);
    // Unchained or not, the shim stays: it answers DEL of pods added while meshcni was chained.
    expect(existsSync(join(binDir(), 'meshcni'))).toBe(true);
    if (kept) {
      // Still chained with no agent: a pod that needs capture must not start uncaptured.
      await expect(cri.runPodSandbox(pods.late!)).rejects.toThrow(/meshcni/);
    }
  });
});
