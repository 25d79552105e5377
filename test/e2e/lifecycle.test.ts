// The agent in the node's lifecycle, against an in-process API server that enforces the agent's RBAC
// (nodes get+patch, pods get, daemonsets get): the readiness taint is lifted only once the agent is
// chained in and serving; at stop, an upgrade keeps the chain (new pods get code 11 from the installed
// shim) and a removal of the DaemonSet unchains it exactly. Real installer, real chain. Root.
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { KubeNodeLifecycle } from '../../src/agent/node-lifecycle.js';
import { CniInstaller } from '../../src/install/installer.js';
import { CniPluginError } from '../../src/runtime/cni-exec.js';
import { Sandbox, podConfList, type MeshcniEntry } from '../../src/runtime/sandbox.js';
import { admit, loadPolicy } from '../helpers/admission-policy.js';
import { until } from '../helpers/wait.js';
import { ROOT, SHIM, World, nftRuleset } from './helpers.js';
import { fakeKubeConfig } from './fake-kube.js';

const silent = pino({ level: process.env.KUBE_TEST_LOG ?? 'silent' });
const TAINT = 'meshcni.io/agent-not-ready';
/** What deploy/rbac.yaml grants the agent for its lifecycle, as verb + resource. */
const ALLOWED = new Set(['get nodes', 'patch nodes', 'get pods', 'get daemonsets']);

const NODE_POLICY = loadPolicy(join(ROOT, 'deploy/node-taint-policy.yaml'), 'meshcni-agent-node-taint');
/** The agent's bound ServiceAccount token, as the API server authenticates it on node-1. */
const AGENT_USER = {
  username: 'system:serviceaccount:kube-system:meshcni-agent',
  extra: { 'authentication.kubernetes.io/node-name': ['node-1'] },
};

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

/** An API server holding one node, the agent's pod and its DaemonSet; refuses anything RBAC does not allow. */
class FakeApi {
  node: Obj = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-1', resourceVersion: '7', labels: { 'kubernetes.io/os': 'linux', pool: 'apps' } },
    spec: {
      taints: [
        { key: TAINT, effect: 'NoSchedule' },
        { key: 'other/keep', effect: 'NoExecute', value: 'x' },
      ],
    },
  };
  // Tolerates everything, as deploy/daemonset.yaml does.
  daemonSet: Obj | null = {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'meshcni-agent', namespace: 'kube-system', uid: 'ds-uid-1' },
    spec: {
      template: { spec: { nodeSelector: { 'kubernetes.io/os': 'linux' }, tolerations: [{ operator: 'Exists' }] } },
    },
  };
  readonly agentPod: Obj = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'meshcni-agent-x7k2p',
      namespace: 'kube-system',
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'meshcni-agent', uid: 'ds-uid-1', controller: true },
      ],
    },
  };
  /** Called after each node GET is answered (to change the node between GET and PATCH). */
  afterNodeGet?: () => void;
  readonly requests: string[] = [];
  readonly denied: string[] = [];
  patchContentTypes: string[] = [];
  private server: Server;
  port = 0;

  constructor() {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const path = new URL(req.url!, 'http://x').pathname;
        const json = (code: number, o: unknown): void => {
          res.writeHead(code, { 'content-type': 'application/json' });
          res.end(JSON.stringify(o));
        };
        const notFound = (): void =>
          json(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 });
        const verb = req.method === 'PATCH' ? 'patch' : req.method === 'GET' ? 'get' : String(req.method).toLowerCase();
        const resource = /^\/api\/v1\/nodes\//.test(path)
          ? 'nodes'
          : /\/daemonsets\//.test(path)
            ? 'daemonsets'
            : /\/pods\//.test(path)
              ? 'pods'
              : path;
        this.requests.push(`${verb} ${resource}`);
        if (!ALLOWED.has(`${verb} ${resource}`)) {
          this.denied.push(`${verb} ${path}`);
          return json(403, {
            kind: 'Status',
            code: 403,
            reason: 'Forbidden',
            message: `${verb} ${resource} is forbidden`,
          });
        }
        if (path === '/api/v1/nodes/node-1') {
          if (verb === 'get') {
            json(200, this.node);
            return this.afterNodeGet?.();
          }
          this.patchContentTypes.push(String(req.headers['content-type']));
          const ops = JSON.parse(body) as { op: string; path: string; value: unknown }[];
          const spec = this.node.spec as { taints?: unknown };
          for (const op of ops) {
            const ok =
              (op.op === 'test' && op.path === '/metadata/resourceVersion') ||
              (op.op === 'replace' && op.path === '/spec/taints');
            if (!ok) return json(422, { kind: 'Status', code: 422, message: `unexpected ${op.op} ${op.path}` });
            if (op.op === 'test' && op.value !== this.node.metadata.resourceVersion)
              return json(422, { kind: 'Status', code: 422, message: 'test failed' });
          }
          // deploy/node-taint-policy.yaml, as the API server's admission runs it for the agent's token.
          const next = structuredClone(this.node);
          for (const op of ops) if (op.op === 'replace') (next.spec as { taints?: unknown }).taints = op.value;
          const verdict = admit(NODE_POLICY, {
            operation: 'UPDATE',
            resource: 'nodes',
            userInfo: AGENT_USER,
            object: next,
            oldObject: this.node,
          });
          if (!verdict.allowed || !verdict.applied) {
            this.denied.push(`admission ${path}: ${verdict.allowed ? 'policy did not apply' : verdict.message}`);
            return json(422, {
              kind: 'Status',
              code: 422,
              reason: 'Invalid',
              message: verdict.allowed ? 'policy did not apply' : verdict.message,
            });
          }
          for (const op of ops) if (op.op === 'replace') spec.taints = op.value;
          this.node.metadata.resourceVersion = String(Number(this.node.metadata.resourceVersion) + 1);
          return json(200, this.node);
        }
        if (path === '/api/v1/namespaces/kube-system/pods/meshcni-agent-x7k2p') return json(200, this.agentPod);
        if (path === '/apis/apps/v1/namespaces/kube-system/daemonsets/meshcni-agent')
          return this.daemonSet ? json(200, this.daemonSet) : notFound();
        notFound();
      });
    });
  }

  taints(): string[] {
    return ((this.node.spec as { taints?: { key: string }[] }).taints ?? []).map((t) => t.key);
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }

  kubeConfig(): KubeConfig {
    return fakeKubeConfig(this.port);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(() => r(null)));
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A node: fake API, a primary CNI conflist (bridge + loopback) in a temp conf dir, the agent with the real installer. */
async function node(opts: { writePrimary?: boolean } = {}) {
  const api = new FakeApi();
  await api.start();
  cleanups.push(() => api.close());
  const w = new World();
  cleanups.push(() => w.cleanup());
  const confDir = join(w.dir, 'net.d');
  const binDir = join(w.dir, 'bin');
  mkdirSync(confDir);
  mkdirSync(binDir);
  const primary = JSON.stringify(
    podConfList({ bridge: w.bridge, subnet: w.subnet, ipamDataDir: join(w.dir, 'ipam') }, null),
    null,
    2,
  );
  const writePrimary = (): void => writeFileSync(join(confDir, '10-bridge.conflist'), primary);
  if (opts.writePrimary !== false) writePrimary();
  w.addPod({ namespace: 'shop', name: 'web' });
  const settings = w.agentSettings();
  const installer = new CniInstaller({
    cniConfDir: confDir,
    cniBinDir: binDir,
    shimPath: SHIM,
    socketPath: w.socketPath,
    podIndexPath: join(w.stateDir, 'pod-index'),
    excludeNamespaces: ['kube-system'],
    recheckIntervalMs: 100,
    debounceMs: 10,
    log: silent,
  });
  const lifecycle = new KubeNodeLifecycle({
    kubeConfig: api.kubeConfig(),
    nodeName: 'node-1',
    podName: 'meshcni-agent-x7k2p',
    podNamespace: 'kube-system',
    taintKey: TAINT,
    log: silent,
    retryMs: 50,
  });
  const agent = new Agent(settings, silent, { installer, lifecycle });
  let stopped = false;
  cleanups.push(async () => {
    if (!stopped) await agent.stop().catch(() => undefined);
    await installer.uninstall().catch(() => undefined);
  });
  const stop = async (): Promise<void> => {
    stopped = true;
    await agent.stop();
  };
  return { api, w, agent, confDir, binDir, primary, writePrimary, stop };
}

/** A sandbox run through the conflist the installer left on the node, with the shim it installed. */
function sandboxFromNode(w: World, confDir: string, binDir: string, n: number): Sandbox {
  const conf = JSON.parse(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8'));
  const s = new Sandbox(
    `lc${process.pid % 100000}x${n}`,
    { namespace: 'shop', name: 'web' },
    conf,
    join(binDir, 'meshcni'),
  );
  s.create();
  cleanups.push(() => s.destroy().catch(() => undefined));
  return s;
}

describe('readiness taint', () => {
  it('stays while the agent is not chained in, and is lifted (only ours) once it is ready', async () => {
    const { api, agent, writePrimary } = await node({ writePrimary: false });
    const starting = agent.start();
    await new Promise((r) => setTimeout(r, 400)); // the installer waits for the primary config
    expect(agent.isReady()).toBe(false);
    expect(api.taints()).toEqual([TAINT, 'other/keep']);
    writePrimary();
    await starting;
    await until(() => !api.taints().includes(TAINT));
    expect(api.taints()).toEqual(['other/keep']);
    expect((api.node.spec as { taints: unknown[] }).taints).toEqual([
      { key: 'other/keep', effect: 'NoExecute', value: 'x' },
    ]);
    expect(api.patchContentTypes).toEqual(['application/json-patch+json']);
    expect(api.denied).toEqual([]);
  });

  it('never drops a taint someone else added between its read and its patch', async () => {
    const { api, agent } = await node();
    api.afterNodeGet = () => {
      api.afterNodeGet = undefined; // once: another controller adds a taint right after our GET
      (api.node.spec as { taints: unknown[] }).taints.push({ key: 'late/arrival', effect: 'NoSchedule' });
      api.node.metadata.resourceVersion = String(Number(api.node.metadata.resourceVersion) + 1);
    };
    await agent.start();
    await until(() => !api.taints().includes(TAINT));
    expect(api.taints()).toEqual(['other/keep', 'late/arrival']);
  });

  it('keeps retrying when the patch is refused, and succeeds once it is allowed', async () => {
    const { api, agent } = await node();
    ALLOWED.delete('patch nodes');
    cleanups.push(() => void ALLOWED.add('patch nodes'));
    await agent.start();
    await until(() => api.denied.length >= 2);
    expect(api.taints()).toContain(TAINT);
    ALLOWED.add('patch nodes');
    await until(() => !api.taints().includes(TAINT));
  });
});

describe('SIGTERM: upgrade or removal', () => {
  it('on an upgrade keeps the chain and the shim: a new pod gets code 11 and runs nothing uncaptured', async () => {
    const { api, agent, w, confDir, binDir, stop } = await node();
    await agent.start();
    await stop();
    const entries = (
      JSON.parse(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).plugins as MeshcniEntry[]
    ).filter((p) => (p as { type?: string }).type === 'meshcni');
    expect(entries).toHaveLength(1);
    expect(existsSync(join(binDir, 'meshcni'))).toBe(true);
    // Still chained: STATUS stays ready through the outage.
    expect(existsSync(join(w.stateDir, 'pod-index.ready'))).toBe(true);
    const s = sandboxFromNode(w, confDir, binDir, 1);
    const e = await s.add().then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CniPluginError);
    expect((e as CniPluginError).cniError?.code).toBe(11);
    expect(nftRuleset(s.netnsName)).toBe('');
    expect(api.requests).toContain('get daemonsets');
    expect(api.denied).toEqual([]);
  });

  const podSpec = (api: FakeApi): Record<string, unknown> =>
    (api.daemonSet!.spec as { template: { spec: Record<string, unknown> } }).template.spec;
  const required = (key: string, operator: string, values: string[]) => ({
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key, operator, values }] }],
      },
    },
  });
  const removals: [string, (api: FakeApi) => void][] = [
    [
      'is being deleted (deletionTimestamp)',
      (api) => (api.daemonSet!.metadata.deletionTimestamp = '2026-11-26T06:00:00Z'),
    ],
    ['is gone', (api) => (api.daemonSet = null)],
    [
      'no longer selects the node (nodeSelector)',
      (api) => (podSpec(api).nodeSelector = { 'kubernetes.io/os': 'linux', mesh: 'on' }),
    ],
    [
      'no longer selects the node (required node affinity)',
      (api) => (podSpec(api).affinity = required('pool', 'In', ['batch'])),
    ],
    [
      'does not tolerate a NoSchedule taint of the node',
      (api) =>
        (podSpec(api).tolerations = [
          { key: 'other/keep', operator: 'Exists' },
          { key: TAINT, operator: 'Exists' },
        ]) &&
        (api.node.spec as { taints: unknown[] }).taints.push({ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }),
    ],
  ];

  it('keeps the chain when the DaemonSet still selects the node (nodeSelector, affinity, tolerations)', async () => {
    const { api, agent, confDir, primary, stop } = await node();
    await agent.start();
    podSpec(api).affinity = required('pool', 'In', ['apps', 'batch']);
    podSpec(api).tolerations = [{ key: 'other/keep', operator: 'Equal', value: 'x', effect: 'NoExecute' }];
    await stop();
    expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).not.toBe(primary);
    expect(api.requests).toContain('get daemonsets');
    expect(api.denied).toEqual([]);
  });
  it.each(removals)(
    'when its DaemonSet %s, unchains: the primary config is back byte for byte, pods start, and pods added while chained still tear down',
    async (_what, remove) => {
      const { api, agent, w, confDir, binDir, primary, stop } = await node();
      await agent.start();
      expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).not.toBe(primary);
      const addedWhileChained = sandboxFromNode(w, confDir, binDir, 3);
      await addedWhileChained.add();
      remove(api);
      await stop();
      expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).toBe(primary);
      // The shim stays (istio/istio#59846): its DEL, with the config it was added with, succeeds without an agent.
      expect(existsSync(join(binDir, 'meshcni'))).toBe(true);
      await addedWhileChained.destroy();
      // A later install starts behind the STATUS bootstrap gate again.
      expect(existsSync(join(w.stateDir, 'pod-index.ready'))).toBe(false);
      const s = sandboxFromNode(w, confDir, binDir, 2);
      await s.add();
      expect(s.address()).toMatch(/^10\.249\./);
      expect(api.denied).toEqual([]);
    },
  );

  it('keeps the chain when it cannot read its DaemonSet (fail closed)', async () => {
    const { api, agent, confDir, primary, stop } = await node();
    await agent.start();
    ALLOWED.delete('get daemonsets');
    cleanups.push(() => void ALLOWED.add('get daemonsets'));
    api.daemonSet!.metadata.deletionTimestamp = '2026-11-26T06:00:00Z';
    await stop();
    expect(readFileSync(join(confDir, '10-bridge.conflist'), 'utf8')).not.toBe(primary);
    expect(api.denied).toEqual(['get /apis/apps/v1/namespaces/kube-system/daemonsets/meshcni-agent']);
  });
});
