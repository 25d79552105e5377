// State and repair: the agent records each captured pod, and reconcile re-applies rules that were
// flushed from a pod's namespace (or only reports, by policy). In-process agent, real netns and a
// real CNI chain through the built shim. Root.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { inNetns } from '../helpers/netns.js';
import { World, saveIn } from '../e2e/helpers.js';

const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const DOCUMENTED = {
  'traffic.sidecar.istio.io/excludeInboundPorts': '22',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
};
const silent = pino({ level: 'silent' });

const worlds: World[] = [];
const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop().catch(() => undefined);
  for (const w of worlds.splice(0)) await w.cleanup();
});

async function agentFor(w: World, extra: Record<string, unknown> = {}): Promise<Agent> {
  const settings = w.agentSettings(extra);
  const a = new Agent(settings, silent);
  agents.push(a);
  await a.start();
  await a.reconcile();
  return a;
}

function oracle(w: World): string {
  const s = w.sandbox({ namespace: 'oracle', name: 'x' }, null);
  inNetns(s.netnsName, 'iptables-nft-restore', [], fixture);
  return saveIn(s.netnsName);
}

describe('reconcile', () => {
  it('re-applies rules flushed from a captured pod, logs and counts the repair', async () => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'web', annotations: DOCUMENTED });
    const agent = await agentFor(w);
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    await s.add();
    const want = oracle(w);
    expect(saveIn(s.netnsName)).toBe(want);

    expect((await agent.reconcile()).intact).toBe(1);
    inNetns(s.netnsName, 'nft', ['flush', 'ruleset']);
    const report = await agent.reconcile();
    expect(report.repaired).toEqual(['shop/web']);
    expect(saveIn(s.netnsName)).toBe(want);
    expect(await agent.metrics.registry.getSingleMetricAsString('meshcni_repairs_total')).toMatch(
      /result="repaired"\} 1/,
    );
  });

  it('only reports drift when the policy says report', async () => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'web', annotations: DOCUMENTED });
    const agent = await agentFor(w, { repairPolicy: 'report' });
    const s = w.sandbox({ namespace: 'shop', name: 'web' });
    await s.add();
    inNetns(s.netnsName, 'nft', ['flush', 'ruleset']);
    const report = await agent.reconcile();
    expect(report.reported).toEqual(['shop/web']);
    expect(report.repaired).toEqual([]);
    expect(inNetns(s.netnsName, 'nft', ['list', 'ruleset']).trim()).toBe('');
  });

  it('a restarted agent remembers its pods and forgets those whose namespace is gone', async () => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'a', annotations: DOCUMENTED });
    w.addPod({ namespace: 'shop', name: 'b', annotations: DOCUMENTED });
    const first = await agentFor(w);
    const a = w.sandbox({ namespace: 'shop', name: 'a' });
    const b = w.sandbox({ namespace: 'shop', name: 'b' });
    await a.add();
    await b.add();
    await first.stop();
    agents.splice(agents.indexOf(first), 1);
    // The runtime deletes b's sandbox while the agent is down: its DEL never reaches us.
    execFileSync('ip', ['netns', 'del', b.netnsName]);
    inNetns(a.netnsName, 'nft', ['flush', 'ruleset']);
    const second = await agentFor(w);
    const report = await second.reconcile();
    expect(report.forgotten).toEqual([]); // the start-up pass already forgot b
    expect(second.state.all().map((r) => r.name)).toEqual(['a']);
    expect(saveIn(a.netnsName)).toBe(oracle(w));
  });

  it('reports running pods that should be captured but never saw an ADD', async () => {
    const w = new World();
    worlds.push(w);
    w.addPod({ namespace: 'shop', name: 'early', annotations: DOCUMENTED });
    w.addPod({ namespace: 'shop', name: 'plain', containers: ['app'] });
    const agent = await agentFor(w);
    const report = await agent.reconcile();
    expect(report.uncaptured).toEqual(['shop/early']);
  });
});
