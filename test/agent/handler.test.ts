// The CNI handler alone, through its injectable dependencies: a fake pod source, a recording kernel
// (apply/read/remove) and a real state store in a temp dir. No root, no netns: what the handler
// decides, records and asks the kernel to do for each command.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG } from '../../src/capture/config.js';
import type { CniRequest } from '../../src/agent/cni.js';
import { createCniHandler, type HandlerDeps } from '../../src/agent/endpoint/handler.js';
import { createMetrics } from '../../src/agent/metrics.js';
import { buildPlan } from '../../src/agent/plan/build.js';
import { PodStateStore } from '../../src/agent/state/records.js';
import type { TableContents } from '../../src/nft/model.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const meshed = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: 'shop', name: 'web', uid: 'u-web', annotations: {} },
  spec: {
    containers: [{ name: 'app' }, { name: 'istio-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }],
  },
};
const plain = {
  ...meshed,
  metadata: { ...meshed.metadata, name: 'plain', uid: 'u-plain' },
  spec: { containers: [{ name: 'app' }, { name: 'logger' }] },
};
const PODS: Record<string, Record<string, unknown>> = { 'shop/web': meshed, 'shop/plain': plain };

/** A world: the handler and what it did to the (fake) kernel. */
function world(over: Partial<HandlerDeps> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'mcni-handler-'));
  dirs.push(dir);
  const kernel = new Map<string, TableContents[]>();
  const calls: string[] = [];
  const state = new PodStateStore(dir);
  state.load();
  const deps: HandlerDeps = {
    excludeNamespaces: ['kube-system'],
    pods: {
      lookup: async (k) => PODS[`${k.namespace}/${k.name}`] ?? null,
      list: async () => Object.values(PODS),
      start: async () => undefined,
      stop: async () => undefined,
      ready: () => true,
    } as HandlerDeps['pods'],
    planPod: (pod) => buildPlan(pod, DEFAULT_CAPTURE_CONFIG),
    applyPlan: async (netns, plan) => {
      calls.push(`apply ${netns}`);
      if ('tables' in plan) kernel.set(netns, plan.tables);
    },
    readTables: async (netns) => kernel.get(netns) ?? [],
    removeTables: async (netns, labels) => {
      calls.push(`remove ${netns} ${labels.join(',')}`);
      kernel.delete(netns);
    },
    state,
    metrics: createMetrics('node-a', { processDefaults: false }),
    log: pino({ level: 'silent' }),
    isReady: () => true,
    ...over,
  };
  return { handler: createCniHandler(deps), kernel, calls, state };
}

const req = (command: CniRequest['command'], name: string, containerId = `c-${name}`): CniRequest => ({
  command,
  containerId,
  netns: `/var/run/netns/${name}`,
  ifName: 'eth0',
  args: `K8S_POD_NAMESPACE=shop;K8S_POD_NAME=${name};K8S_POD_UID=u-${name}`,
  path: '/opt/cni/bin',
  config: {
    cniVersion: '1.0.0',
    name: 'k8s',
    type: 'meshcni',
    prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/24' }] },
  },
});

describe('CNI handler (injected dependencies)', () => {
  it('ADD of a captured pod records it, applies one plan, and passes prevResult through', async () => {
    const w = world();
    const out = await w.handler(req('ADD', 'web'));
    expect(out).toMatchObject({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/24' }] });
    expect(w.calls).toEqual(['apply /var/run/netns/web']);
    const rec = w.state.get('c-web');
    expect(rec).toMatchObject({
      namespace: 'shop',
      name: 'web',
      uid: 'u-web',
      netns: '/var/run/netns/web',
      layout: 'iptables',
    });
    expect(rec!.tables!.length).toBeGreaterThan(0);
  });

  it('ADD of a pod that is not captured touches neither kernel nor state', async () => {
    const w = world();
    await w.handler(req('ADD', 'plain'));
    expect(w.calls).toEqual([]);
    expect(w.state.get('c-plain')).toBeUndefined();
  });

  it('a repeated ADD with the rules in place applies nothing again', async () => {
    const w = world();
    await w.handler(req('ADD', 'web'));
    await w.handler(req('ADD', 'web'));
    expect(w.calls).toEqual(['apply /var/run/netns/web']);
  });

  it('CHECK passes while the rules are there and names the difference once they are gone', async () => {
    const w = world();
    await w.handler(req('ADD', 'web'));
    await expect(w.handler(req('CHECK', 'web'))).resolves.toBeNull();
    w.kernel.delete('/var/run/netns/web');
    await expect(w.handler(req('CHECK', 'web'))).rejects.toThrow(/rule difference\(s\) in \/var\/run\/netns\/web/);
  });

  it('DEL removes the recorded tables from the recorded netns and forgets the pod', async () => {
    const w = world();
    await w.handler(req('ADD', 'web'));
    const tables = w.state.get('c-web')!.tables!;
    await w.handler(req('DEL', 'web'));
    expect(w.calls).toEqual(['apply /var/run/netns/web', `remove /var/run/netns/web ${tables.join(',')}`]);
    expect(w.state.get('c-web')).toBeUndefined();
  });

  it('a failed apply leaves no record behind and reports the kernel error', async () => {
    const w = world({
      applyPlan: async () => {
        throw Object.assign(new Error('netlink: EPERM'), { code: 'EPERM' });
      },
    });
    await expect(w.handler(req('ADD', 'web'))).rejects.toThrow(/pod shop\/web: netlink: EPERM/);
    expect(w.state.get('c-web')).toBeUndefined();
  });

  it('an unknown pod waits (try again later) rather than starting uncaptured', async () => {
    const w = world();
    await expect(w.handler(req('ADD', 'ghost'))).rejects.toMatchObject({ code: 11 });
    expect(w.calls).toEqual([]);
  });

  it('an excluded namespace never reaches the pod source', async () => {
    let looked = 0;
    const w = world({
      pods: {
        lookup: async () => (looked++, meshed),
        list: async () => [],
        start: async () => undefined,
        stop: async () => undefined,
        ready: () => true,
      } as HandlerDeps['pods'],
    });
    const r = req('ADD', 'web');
    r.args = 'K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=web;K8S_POD_UID=u-web';
    await w.handler(r);
    expect(looked).toBe(0);
    expect(w.calls).toEqual([]);
  });
});
