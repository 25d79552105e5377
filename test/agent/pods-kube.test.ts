// The Kubernetes pod source against an in-process API server speaking the real protocol: list with
// resourceVersion, a streaming watch with bookmarks, 410 Gone forcing a relist, GET and 404.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { KubePodSource } from '../../src/agent/pods/kube.js';
import { until } from '../helpers/wait.js';
import { fakeKubeConfig } from '../e2e/fake-kube.js';

type Pod = Record<string, unknown>;

function pod(name: string, uid: string, node = 'node-1', rv = '1'): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'shop',
      uid,
      resourceVersion: rv,
      annotations: { 'sidecar.istio.io/status': '{}' },
      creationTimestamp: '2026-11-25T00:00:00Z',
    },
    spec: {
      nodeName: node,
      containers: [
        { name: 'app', image: 'example/app', ports: [{ containerPort: 8080, protocol: 'TCP' }] },
        {
          name: 'istio-proxy',
          image: 'istio/proxyv2:1.24.0',
          securityContext: { runAsUser: 1337, runAsGroup: 1337 },
          env: [{ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' }],
        },
      ],
    },
    status: { phase: 'Running', podIP: '10.0.0.5' },
  };
}

/** A tiny API server: pods in a map, list/watch/get/delete, with knobs for the tests. */
class FakeApi {
  readonly pods = new Map<string, Pod>();
  rv = 100;
  lists = 0;
  gets = 0;
  readonly watchers = new Set<ServerResponse>();
  readonly watchQueries: URLSearchParams[] = [];
  private server: Server;
  port = 0;

  constructor() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const json = (code: number, body: unknown): void => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (url.pathname === '/api/v1/pods') {
        const sel = url.searchParams.get('fieldSelector');
        if (sel !== 'spec.nodeName=node-1')
          return json(400, { kind: 'Status', code: 400, message: `bad selector ${sel}` });
        if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') {
          this.watchQueries.push(url.searchParams);
          res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
          this.watchers.add(res);
          res.on('close', () => this.watchers.delete(res));
          return;
        }
        this.lists++;
        return json(200, {
          kind: 'PodList',
          apiVersion: 'v1',
          metadata: { resourceVersion: String(this.rv) },
          items: [...this.pods.values()],
        });
      }
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname);
      if (m) {
        const p = this.pods.get(`${m[1]}/${m[2]}`);
        if (req.method === 'GET') {
          this.gets++;
          return p
            ? json(200, p)
            : json(404, {
                kind: 'Status',
                apiVersion: 'v1',
                status: 'Failure',
                reason: 'NotFound',
                code: 404,
                message: `pods "${m[2]}" not found`,
              });
        }
        if (req.method === 'DELETE') {
          this.pods.delete(`${m[1]}/${m[2]}`);
          return json(200, p ?? {});
        }
      }
      json(404, { kind: 'Status', code: 404 });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }

  send(type: string, object: unknown): void {
    for (const w of this.watchers) w.write(JSON.stringify({ type, object }) + '\n');
  }

  event(type: 'ADDED' | 'MODIFIED' | 'DELETED', p: Pod): void {
    this.rv++;
    const meta = p.metadata as { namespace: string; name: string; resourceVersion?: string };
    meta.resourceVersion = String(this.rv);
    if (type === 'DELETED') this.pods.delete(`${meta.namespace}/${meta.name}`);
    else this.pods.set(`${meta.namespace}/${meta.name}`, p);
    this.send(type, p);
  }

  /** Ends every watch with 410 Gone, as an API server does when the resourceVersion is too old. */
  expire(): void {
    this.send('ERROR', {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      message: 'too old resource version: 1 (150)',
      reason: 'Expired',
      code: 410,
    });
    for (const w of this.watchers) w.end();
  }

  kubeConfig(): KubeConfig {
    return fakeKubeConfig(this.port);
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(() => r(null)));
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(initial: Pod[] = []): Promise<{ api: FakeApi; source: KubePodSource }> {
  const api = new FakeApi();
  for (const p of initial) {
    const meta = p.metadata as { namespace: string; name: string };
    api.pods.set(`${meta.namespace}/${meta.name}`, p);
  }
  await api.start();
  cleanups.push(() => api.close());
  const source = new KubePodSource({
    nodeName: 'node-1',
    kubeConfig: api.kubeConfig(),
    log: pino({ level: process.env.KUBE_TEST_LOG ?? 'silent' }),
    cacheWaitMs: 300,
  });
  await source.start();
  cleanups.push(() => source.stop());
  await until(() => api.watchers.size > 0);
  return { api, source };
}

describe('Kubernetes pod source', () => {
  it('lists the pods of its node and serves lookups from the cache', async () => {
    const { api, source } = await setup([pod('web', 'u1')]);
    expect(source.ready()).toBe(true);
    const found = await source.lookup({ namespace: 'shop', name: 'web' }, { timeoutMs: 1000 });
    expect((found?.spec as { containers: { name: string }[] }).containers.map((c) => c.name)).toEqual([
      'app',
      'istio-proxy',
    ]);
    expect(api.gets).toBe(0);
    // The watch resumes from the list's resourceVersion and asks for bookmarks.
    expect(api.watchQueries[0]!.get('resourceVersion')).toBe('100');
    expect(api.watchQueries[0]!.get('allowWatchBookmarks')).toBe('true');
  });

  it('finds a pod that arrives through the watch while the lookup waits', async () => {
    const { api, source } = await setup();
    const lookup = source.lookup({ namespace: 'shop', name: 'late' }, { timeoutMs: 2000 });
    setTimeout(() => api.event('ADDED', pod('late', 'u2')), 50);
    expect(((await lookup)?.metadata as { uid: string }).uid).toBe('u2');
    expect(api.gets).toBe(0);
  });

  it('falls back to a GET when the cache does not have the pod', async () => {
    const { api, source } = await setup();
    api.pods.set('shop/direct', pod('direct', 'u3')); // in the API, but no watch event sent
    const found = await source.lookup({ namespace: 'shop', name: 'direct' }, { timeoutMs: 2000 });
    expect((found?.metadata as { uid: string }).uid).toBe('u3');
    expect(api.gets).toBeGreaterThanOrEqual(1);
  });

  it('returns null for a pod that does not exist, after bounded retries', async () => {
    const { source } = await setup();
    const t0 = Date.now();
    expect(await source.lookup({ namespace: 'shop', name: 'ghost' }, { timeoutMs: 1500 })).toBeNull();
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('forgets deleted pods and ignores a pod recreated under the same name with another uid', async () => {
    const { api, source } = await setup([pod('web', 'old')]);
    api.event('DELETED', pod('web', 'old'));
    await new Promise((r) => setTimeout(r, 100));
    expect(await source.list()).toEqual([]);
    api.event('ADDED', pod('web', 'new'));
    await new Promise((r) => setTimeout(r, 100));
    expect(await source.lookup({ namespace: 'shop', name: 'web', uid: 'old' }, { timeoutMs: 200 })).toBeNull();
    expect(
      (
        (await source.lookup({ namespace: 'shop', name: 'web', uid: 'new' }, { timeoutMs: 200 }))?.metadata as {
          uid: string;
        }
      ).uid,
    ).toBe('new');
  });

  it('takes bookmarks as progress and relists after 410 Gone', async () => {
    const { api, source } = await setup([pod('a', 'ua')]);
    api.send('BOOKMARK', { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: '140' } });
    await new Promise((r) => setTimeout(r, 100));
    // While the watch is down, the world changes: only a relist can tell.
    api.pods.delete('shop/a');
    api.pods.set('shop/b', pod('b', 'ub'));
    api.rv = 150;
    const listsBefore = api.lists;
    api.expire();
    await until(() => api.lists > listsBefore && api.watchers.size > 0);
    const names = (await source.list()).map((p) => (p.metadata as { name: string }).name);
    expect(names).toEqual(['b']);
    expect(api.watchQueries.at(-1)!.get('resourceVersion')).toBe('150');
  });

  it('resumes a watch that simply ended, from the last resourceVersion, without relisting', async () => {
    const { api } = await setup([pod('a', 'ua')]);
    api.event('MODIFIED', pod('a', 'ua'));
    await new Promise((r) => setTimeout(r, 50));
    const lists = api.lists;
    for (const w of api.watchers) w.end();
    await until(() => api.watchQueries.length >= 2 && api.watchers.size > 0);
    expect(api.lists).toBe(lists);
    expect(api.watchQueries.at(-1)!.get('resourceVersion')).toBe('101');
  });

  it('deletes a pod through the API for the delete repair policy', async () => {
    const { api, source } = await setup([pod('web', 'u1')]);
    await source.deletePod({ namespace: 'shop', name: 'web' });
    expect(api.pods.has('shop/web')).toBe(false);
  });
});
