// Pod metadata from the Kubernetes API: a list+watch cache of the pods on this node (fieldSelector
// spec.nodeName), with bookmarks, relist on 410 Gone and restart with backoff; lookups wait briefly
// for the cache (the pod may reach it after the CNI ADD) and fall back to a GET with retries.
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { keyString, podKeyOf, uidMatches, type PodKey, type PodSource } from './source.js';

export interface KubePodSourceOptions {
  nodeName: string;
  log: Logger;
  /** A kubeconfig file; default: in-cluster service account, else $KUBECONFIG / ~/.kube/config. */
  kubeconfigPath?: string;
  /** A ready KubeConfig (tests). */
  kubeConfig?: KubeConfig;
  /** How long a lookup waits for the cache before asking the API directly (ms). */
  cacheWaitMs?: number;
  /** GET attempts (with backoff) when the cache does not have the pod. */
  getAttempts?: number;
}

type Pod = Record<string, unknown>;
const plain = (o: unknown): Pod => JSON.parse(JSON.stringify(o)) as Pod;
const statusOf = (e: unknown): number | undefined =>
  e && typeof e === 'object' ? ((e as { code?: number }).code ?? (e as { statusCode?: number }).statusCode) : undefined;

export class KubePodSource implements PodSource {
  /** The cluster connection, shared with the agent's node lifecycle. */
  readonly kc: KubeConfig;
  private readonly api: CoreV1Api;
  private readonly cache = new Map<string, Pod>();
  private readonly waiters = new Set<() => void>();
  private readonly listeners: (() => void)[] = [];
  private resourceVersion = '';
  private synced = false;
  private stopped = false;
  private abort?: AbortController;
  private restartTimer?: NodeJS.Timeout;
  private backoffMs = 250;
  private readonly fieldSelector: string;

  constructor(private readonly opts: KubePodSourceOptions) {
    if (opts.kubeConfig) this.kc = opts.kubeConfig;
    else {
      this.kc = new KubeConfig();
      if (opts.kubeconfigPath) this.kc.loadFromFile(opts.kubeconfigPath);
      else this.kc.loadFromDefault();
    }
    this.api = this.kc.makeApiClient(CoreV1Api);
    this.fieldSelector = `spec.nodeName=${opts.nodeName}`;
  }

  ready(): boolean {
    return this.synced;
  }

  async start(): Promise<void> {
    await this.relist();
    void this.watch();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.abort?.abort();
    this.notify();
  }

  private notify(): void {
    for (const w of this.waiters) w();
    for (const l of this.listeners) l();
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /** Full list: replaces the cache and remembers the resourceVersion to watch from. */
  private async relist(): Promise<void> {
    const list = await this.api.listPodForAllNamespaces({ fieldSelector: this.fieldSelector });
    this.cache.clear();
    for (const p of list.items) {
      const obj = plain(p);
      const key = podKeyOf(obj);
      if (key) this.cache.set(keyString(key), obj);
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.synced = true;
    this.backoffMs = 250;
    this.opts.log.info(
      { node: this.opts.nodeName, pods: this.cache.size, resourceVersion: this.resourceVersion },
      'pod cache listed',
    );
    this.notify();
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    const w = new Watch(this.kc);
    let gone = false;
    try {
      this.abort = await w.watch(
        '/api/v1/pods',
        { fieldSelector: this.fieldSelector, resourceVersion: this.resourceVersion, allowWatchBookmarks: true },
        (phase: string, obj: Pod) => {
          const meta = (obj?.metadata ?? {}) as { resourceVersion?: string };
          if (phase === 'ERROR') {
            // 410 Gone: our resourceVersion is too old; only a relist helps.
            if ((obj as { code?: number }).code === 410) gone = true;
            this.opts.log.warn({ status: obj }, 'pod watch error event');
            return;
          }
          if (meta.resourceVersion) this.resourceVersion = meta.resourceVersion;
          if (phase === 'BOOKMARK') return;
          const key = podKeyOf(obj);
          if (!key) return;
          if (phase === 'DELETED') this.cache.delete(keyString(key));
          else this.cache.set(keyString(key), obj);
          this.notify();
        },
        (err: unknown) => void this.afterWatch(err, gone),
      );
    } catch (e) {
      void this.afterWatch(e, statusOf(e) === 410);
    }
  }

  /** A watch ended (timeouts are normal): resume from the last resourceVersion, or relist. */
  private async afterWatch(err: unknown, gone: boolean): Promise<void> {
    if (this.stopped) return;
    if (err && (err as Error).name !== 'AbortError')
      this.opts.log.warn({ err: (err as Error).message ?? String(err) }, 'pod watch ended with an error; restarting');
    const delay = err ? this.backoffMs : 0;
    this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
    this.restartTimer = setTimeout(async () => {
      try {
        if (gone || statusOf(err) === 410) await this.relist();
        await this.watch();
      } catch (e) {
        void this.afterWatch(e, true);
      }
    }, delay);
  }

  private cached(key: PodKey): Pod | null {
    const obj = this.cache.get(keyString(key));
    return obj && uidMatches(key, obj) ? obj : null;
  }

  private waitForCache(key: PodKey, ms: number): Promise<Pod | null> {
    const hit = this.cached(key);
    if (hit || ms <= 0) return Promise.resolve(hit);
    return new Promise((resolve) => {
      const check = (): void => {
        const f = this.cached(key);
        if (f || this.stopped) finish(f);
      };
      const finish = (v: Pod | null): void => {
        clearTimeout(t);
        this.waiters.delete(check);
        resolve(v);
      };
      const t = setTimeout(() => finish(this.cached(key)), ms);
      this.waiters.add(check);
    });
  }

  async lookup(key: PodKey, opts: { timeoutMs: number }): Promise<Pod | null> {
    const deadline = Date.now() + opts.timeoutMs;
    const fromCache = await this.waitForCache(key, Math.min(this.opts.cacheWaitMs ?? 500, opts.timeoutMs));
    if (fromCache) return fromCache;
    const attempts = this.opts.getAttempts ?? 3;
    let delay = 100;
    for (let i = 0; i < attempts; i++) {
      try {
        const obj = plain(await this.api.readNamespacedPod({ name: key.name, namespace: key.namespace }));
        if (uidMatches(key, obj)) return obj;
      } catch (e) {
        if (statusOf(e) !== 404)
          this.opts.log.warn({ pod: keyString(key), err: (e as Error).message, attempt: i + 1 }, 'pod GET failed');
      }
      if (Date.now() + delay > deadline) break;
      const hit = await this.waitForCache(key, delay);
      if (hit) return hit;
      delay *= 2;
    }
    return this.cached(key);
  }

  async list(): Promise<Pod[]> {
    return [...this.cache.values()];
  }

  async deletePod(key: PodKey): Promise<void> {
    await this.api.deleteNamespacedPod({ name: key.name, namespace: key.namespace });
  }
}
