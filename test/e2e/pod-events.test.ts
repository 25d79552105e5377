// Kubernetes Events on the pod for each lifecycle action, as the in-process API server receives them:
// capture in place, a refused capture in place, and a refused ADD through the real shim. Root.
import { createServer, type Server } from 'node:http';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { KubePodEvents } from '../../src/agent/pod-events.js';
import { CniPluginError } from '../../src/runtime/cni-exec.js';
import { fakeKubeConfig } from './fake-kube.js';
import { World } from './helpers.js';
import { addPodWithUid, PodProcess } from './pod-process.js';

const silent = pino({ level: 'silent' });
const uid = (n: number): string =>
  `${(process.pid % 1e8).toString(16).padStart(8, '0')}-eeee-4bbb-8ccc-${String(n).padStart(12, '0')}`;
const DOCUMENTED = { 'traffic.sidecar.istio.io/excludeInboundPorts': '22' };

type Event = {
  metadata: { namespace: string };
  involvedObject: { kind: string; namespace: string; name: string; uid?: string };
  type: string;
  reason: string;
  message: string;
  source: { component: string };
};

/** Accepts POST /api/v1/namespaces/<ns>/events (what `events: create` allows) and nothing else. */
class EventsApi {
  readonly events: Event[] = [];
  readonly denied: string[] = [];
  private readonly server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(new URL(req.url!, 'http://x').pathname);
      res.setHeader('content-type', 'application/json');
      if (req.method !== 'POST' || !m) {
        this.denied.push(`${req.method} ${req.url}`);
        res.writeHead(403).end(JSON.stringify({ kind: 'Status', code: 403 }));
        return;
      }
      const ev = JSON.parse(body) as Event;
      if (ev.metadata.namespace !== m[1])
        return void res.writeHead(400).end(JSON.stringify({ kind: 'Status', code: 400 }));
      this.events.push(ev);
      res.writeHead(201).end(body);
    });
  });
  port = 0;
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }
  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(() => r(null)));
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function setup() {
  const api = new EventsApi();
  await api.start();
  cleanups.push(() => api.close());
  const w = new World();
  cleanups.push(() => w.cleanup());
  const events = new KubePodEvents(fakeKubeConfig(api.port), 'node-1', silent);
  const agent = new Agent(w.agentSettings({ warmStart: false }), silent, { events });
  cleanups.push(() => agent.stop());
  return { api, w, events, agent };
}

async function pod(id: string): Promise<PodProcess> {
  const p = new PodProcess(id);
  cleanups.push(() => p.remove());
  await p.start();
  return p;
}

describe('Kubernetes Events', () => {
  it('a pod captured in place gets a Normal CapturedInPlace event naming its netns', async () => {
    const { api, w, events, agent } = await setup();
    await pod(uid(1));
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'early', annotations: DOCUMENTED }, uid(1));
    await agent.start();
    await agent.reconcile();
    await events.flush();
    expect(api.events.map((e) => [e.involvedObject, e.type, e.reason])).toContainEqual([
      { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'early', uid: uid(1) },
      'Normal',
      'CapturedInPlace',
    ]);
    const ev = api.events.find((e) => e.reason === 'CapturedInPlace')!;
    expect(ev.message).toMatch(/captured this pod in place .*netns \d+:\d+/);
    expect(ev.source.component).toBe('meshcni-agent');
    expect(api.denied).toEqual([]);
  });

  it('a running pod whose netns cannot be found gets a Warning naming why', async () => {
    const { api, w, events, agent } = await setup();
    addPodWithUid(w.podsDir, { namespace: 'shop', name: 'ghost', annotations: DOCUMENTED }, uid(2));
    await agent.start();
    await agent.reconcile();
    await events.flush();
    const ev = api.events.find((e) => e.involvedObject.name === 'ghost')!;
    expect(ev).toMatchObject({ type: 'Warning', reason: 'CaptureInPlaceRefused' });
    expect(ev.message).toMatch(new RegExp(`no process in a cgroup of pod uid ${uid(2)}`));
  });

  it('a refused ADD gets a Warning naming the bad annotation and value', async () => {
    const { api, w, events, agent } = await setup();
    w.addPod({
      namespace: 'shop',
      name: 'bad',
      annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '99999' },
    });
    await agent.start();
    const s = w.sandbox({ namespace: 'shop', name: 'bad' });
    const e = await s.add().then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CniPluginError);
    await events.flush();
    const ev = api.events.find((x) => x.involvedObject.name === 'bad')!;
    expect(ev).toMatchObject({ type: 'Warning', reason: 'CaptureRefused', metadata: { namespace: 'shop' } });
    expect(ev.message).toMatch(/CNI code 7.*excludeInboundPorts.*99999/);
  });
});
