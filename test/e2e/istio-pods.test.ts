// Pods as today's Istio injector writes them, through the built agent and the real chain (bridge +
// loopback + the built shim): a native sidecar is captured exactly as a classic pod; a gateway, a pod
// with its own istio-init, DISABLE_ENVOY, the inject label and hostNetwork are skipped, each recorded
// `S` in the pod index, so they also start during an agent outage while the native sidecar waits. Root.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import type { MeshcniEntry } from '../../src/runtime/sandbox.js';
import { NetnsPool, inNetns, normaliseSave } from '../helpers/netns.js';
import { World, nftRuleset, pluginFailure, saveIn } from './helpers.js';

const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const DOCUMENTED = {
  'traffic.sidecar.istio.io/excludeInboundPorts': '22',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
  'sidecar.istio.io/status': '{"initContainers":["istio-validation"],"containers":["istio-proxy"]}',
};
type C = Record<string, unknown>;
const app: C = { name: 'app', image: 'example/app' };
const validation: C = {
  name: 'istio-validation',
  image: 'istio/proxyv2:1.30.3',
  args: ['istio-iptables', '--run-validation'],
};
const proxy = (extra: C = {}): C => ({
  name: 'istio-proxy',
  image: 'istio/proxyv2:1.30.3',
  args: ['proxy', 'sidecar'],
  securityContext: { runAsUser: 1337, runAsGroup: 1337 },
  ...extra,
});
let n = 0;
function pod(name: string, spec: C, meta: C = {}): { metadata: { namespace: string; name: string; uid: string } } & C {
  n++;
  const uid = `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const metadata: C = { namespace: 'shop', name, uid, annotations: DOCUMENTED, ...meta };
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec, status: { phase: 'Running' } } as C as ReturnType<typeof pod>;
}

const PODS = {
  native: pod('native', { initContainers: [validation, proxy({ restartPolicy: 'Always' })], containers: [app] }),
  gateway: pod('gateway', { containers: [proxy({ args: ['proxy', 'router'] }), app] }),
  selfInit: pod('self-init', {
    initContainers: [{ name: 'istio-init', image: 'istio/proxyv2:1.30.3' }],
    containers: [app, proxy()],
  }),
  disabled: pod('disabled', { containers: [app, proxy({ env: [{ name: 'DISABLE_ENVOY', value: 'true' }] })] }),
  labelled: pod('labelled', { containers: [app, proxy()] }, { labels: { 'sidecar.istio.io/inject': 'false' } }),
  host: pod('host', { hostNetwork: true, containers: [app, proxy()] }),
};
const SKIPPED: [keyof typeof PODS, RegExp][] = [
  ['gateway', /"router" proxy, not a sidecar/],
  ['selfInit', /own istio-init init container/],
  ['disabled', /DISABLE_ENVOY=true/],
  ['labelled', /label sidecar\.istio\.io\/inject is "false"/],
];

const worlds: World[] = [];
const agents: Agent[] = [];
const pool = new NetnsPool('ipods');
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
  for (const w of worlds.splice(0)) await w.cleanup();
  pool.cleanup();
});
async function world(): Promise<World> {
  const w = new World();
  worlds.push(w);
  for (const p of Object.values(PODS)) w.addPodObject(p);
  await w.startAgent();
  return w;
}
const sandboxOf = (w: World, p: (typeof PODS)[keyof typeof PODS], entry?: MeshcniEntry) =>
  w.sandbox(
    { namespace: 'shop', name: p.metadata.name, uid: p.metadata.uid } as { namespace: string; name: string },
    entry,
  );

describe("today's injected pods through the real chain", () => {
  it('captures a native-sidecar pod with exactly the documented rules', async () => {
    const w = await world();
    const s = sandboxOf(w, PODS.native);
    await s.add();
    const oracle = pool.create();
    inNetns(oracle, 'iptables-nft-restore', [], fixture);
    expect(saveIn(s.netnsName)).toBe(saveIn(oracle));
    await s.check();
  });

  it.each(SKIPPED)('skips %s, logging why, and programs nothing', async (key, reason) => {
    const w = await world();
    const s = sandboxOf(w, PODS[key]);
    await s.add();
    expect(nftRuleset(s.netnsName)).toBe('');
    const name = PODS[key].metadata.name;
    const log = await w.waitForLog(new RegExp(`"pod":"${name}",[^\\n]*"decision":"skip"`));
    const line = log.split('\n').find((l) => l.includes(`"pod":"${name}",`) && l.includes('"decision":"skip"'))!;
    expect((JSON.parse(line) as { reason: string }).reason).toMatch(reason);
  });

  it('records every skipped pod as S and the native sidecar as C; in an outage only the skipped start', async () => {
    const w = await world();
    const index = join(w.stateDir, 'pod-index');
    const text = readFileSync(index, 'ascii');
    const uid = (p: { metadata: { uid: string } }) => p.metadata.uid;
    expect(text).toContain(`C shop native ${uid(PODS.native)}\n`);
    for (const k of ['gateway', 'selfInit', 'disabled', 'labelled', 'host'] as const) {
      expect(text).toContain(`S shop ${PODS[k].metadata.name} ${uid(PODS[k])}\n`);
    }
    await w.stopAgent('SIGKILL');
    const entry = { ...w.entry(), podIndexPath: index } as MeshcniEntry;
    await sandboxOf(w, PODS.gateway, entry).add();
    const e = await pluginFailure(sandboxOf(w, PODS.native, entry).add());
    expect(e.cniError?.code).toBe(11);
  });
});

describe('whether IPv6 rules are written, through the real chain (an IPv4-only bridge)', () => {
  const silent = pino({ level: 'silent' });
  const dualFlag = pod('dual-flag', {
    containers: [app, proxy({ env: [{ name: 'ISTIO_DUAL_STACK', value: 'true' }] })],
  });
  async function agentWorld(istioVersion: string): Promise<{ w: World; agent: Agent }> {
    const w = new World();
    worlds.push(w);
    w.addPodObject(dualFlag);
    const agent = new Agent(w.agentSettings({ istioVersion, warmStart: false }), silent);
    agents.push(agent);
    await agent.start();
    return { w, agent };
  }

  it("Istio 1.30.3 decides from the pod's addresses: ISTIO_DUAL_STACK on an IPv4-only pod writes none, and reconcile agrees", async () => {
    const { w, agent } = await agentWorld('auto');
    const s = sandboxOf(w, dualFlag);
    await s.add();
    expect(saveIn(s.netnsName)).toContain('! --dport 15008'); // the 1.30 rules
    expect(normaliseSave(inNetns(s.netnsName, 'ip6tables-nft-save', []))).toBe('');
    // The API's copy of the pod has no IPs: reconcile plans with those the runtime gave the ADD.
    const rec = JSON.parse(readFileSync(join(w.stateDir, 'pods', `${s.containerId}.json`), 'utf8')) as {
      podIps?: string[];
    };
    expect(rec.podIps).toEqual([expect.stringMatching(/^\d+\.\d+\.\d+\.\d+$/)]);
    const report = await agent.reconcile();
    expect(report.errors).toEqual([]);
    expect(report.repaired).toEqual([]);
    expect(report.intact).toBe(1);
  });

  it('with the 1.17 rules ISTIO_DUAL_STACK alone decides, as documented (1.17.8 has no dual stack)', async () => {
    const { w } = await agentWorld('1.17');
    const s = sandboxOf(w, dualFlag);
    await s.add();
    expect(inNetns(s.netnsName, 'ip6tables-nft-save', [])).toContain('-A ISTIO_OUTPUT -d ::1/128 -j RETURN');
  });
});
