// The node agent as one object with a lifetime: pod source, state, CNI socket, admin endpoint,
// installer and reconcile loop, started in order and stopped gracefully in reverse.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { parseCaptureConfig, type CaptureConfig } from '../capture/config.js';
import { planKey } from '../capture/plan.js';
import { readTables } from '../nft/apply.js';
import { removeTables } from '../nft/apply.js';
import type { RoutingPlan } from '../rtnetlink/route.js';
import { loadAddon } from '../kernel/index.js';
import type { TableContents } from '../nft/model.js';
import { AdminServer } from './admin.js';
import type { AgentSettings } from './config.js';
import { createCniHandler, errFields } from './endpoint/handler.js';
import type { LocalPlan, PodPlan } from './plan/types.js';
import { KeyedLock } from './keyed-lock.js';
import { createMetrics, type AgentMetrics } from './metrics.js';
import { INDEX_FILE_NAME, READY_MARKER_SUFFIX, writeReadyMarker } from './state/pod-index.js';
import { PodIndexSync } from './state/pod-index-sync.js';
import { KubePodEvents, type PodEvents } from './pod-events.js';
import { DirPodSource } from './pods/dir.js';
import { KubeNodeLifecycle, type NodeLifecycle } from './node-lifecycle.js';
import { KubePodSource } from './pods/kube.js';
import type { PodSource } from './pods/source.js';
import { reconcileOnce, type ReconcileReport } from './repair/reconcile.js';
import { CniSocketServer } from './endpoint/server.js';
import { warmHotPath } from './warm.js';
import { buildPlan, captureDecision } from './plan/build.js';
import { applyPlan } from './plan/apply.js';
import { isBigPod, PlanPool } from './plan/pool.js';
import { PodStateStore } from './state/records.js';

/** The CLI, the benches and tests program plans through the agent module, as before plan/apply.ts. */
export { applyPlan };

export interface AgentDeps {
  /** Injected pod source (tests); otherwise built from the settings. */
  pods?: PodSource;
  /** Called at start and stop when the settings ask for CNI installation. */
  installer?: {
    start(): Promise<void>;
    stop(opts: { uninstall: boolean }): Promise<void>;
    lastOutcome?: { state: string; reason?: string; error?: Error } | undefined;
  };
  /** Injected node lifecycle (tests); otherwise built in Kubernetes mode from the settings. */
  lifecycle?: NodeLifecycle;
  /** Injected Kubernetes Events sink (tests); otherwise built in Kubernetes mode. */
  events?: PodEvents;
  /** Injected plan worker pool (tests, with its test hooks); otherwise one for the capture settings. */
  planPool?: PlanPool;
}

/** While the installer waits (as long as it takes, in serve), say so this often: the agent is not ready meanwhile. */
const INSTALL_WAIT_LOG_MS = 30_000;

const PLAN_CACHE_SIZE = 512;
/**
 * The plan cache's bound by weight (rules + set elements, ~2 KB each with their encoded batch):
 * ordinary pods (tens of rules) fill all 512 slots; a pod with 10,000-entry annotation lists is
 * planned, applied and forgotten instead of holding tens of MB for as long as it stays cached.
 */
const PLAN_CACHE_WEIGHT = 32_768;
const MAX_CACHED_PLAN_WEIGHT = PLAN_CACHE_WEIGHT / 16;

/** Rules plus set elements: what a plan's memory (objects and encoded bytes) grows with. */
export function planWeight(tables: readonly TableContents[]): number {
  let n = 0;
  for (const t of tables) {
    n += t.rules.length;
    for (const st of t.sets) n += st.elements.length;
  }
  return n;
}

/**
 * Pod object → the handler's plan, via the pure capture engine. Pods whose rule-relevant fields are
 * equal share one plan (and so one encoded batch and digest): on a node most pods get the same
 * rules, and planning + encoding is most of the agent's CPU per pod.
 */
export function makePlanner(
  capture: CaptureConfig,
): (pod: Record<string, unknown>) => LocalPlan & { routing?: RoutingPlan } {
  const cache = new Map<string, { plan: LocalPlan & { routing?: RoutingPlan }; weight: number }>();
  let weight = 0;
  return (pod) => {
    const key = planKey(pod);
    const hit = key === null ? undefined : cache.get(key);
    if (hit) {
      cache.delete(key!); // keep recently used entries last (LRU order)
      cache.set(key!, hit);
      return hit.plan;
    }
    const plan = buildPlan(pod, capture);
    const w = plan.capture ? planWeight(plan.tables) : 1;
    if (key !== null && w <= MAX_CACHED_PLAN_WEIGHT) {
      cache.set(key, { plan, weight: w });
      weight += w;
      while (cache.size > PLAN_CACHE_SIZE || weight > PLAN_CACHE_WEIGHT) {
        const [oldest, entry] = cache.entries().next().value!;
        cache.delete(oldest);
        weight -= entry.weight;
      }
    }
    return plan;
  };
}

function podName(pod: Record<string, unknown>): string {
  const m = (pod.metadata ?? {}) as { namespace?: unknown; name?: unknown };
  return `${String(m.namespace ?? 'default')}/${String(m.name ?? '?')}`;
}

export class Agent {
  readonly metrics: AgentMetrics = createMetrics();
  readonly state: PodStateStore;
  readonly pods: PodSource;
  private readonly server: CniSocketServer;
  private admin?: AdminServer;
  private scrape?: AdminServer;
  private reconcileTimer?: NodeJS.Timeout;
  private reconciling?: Promise<ReconcileReport>;
  private ready = false;
  private notReady = 'starting';
  private readonly planPod: (pod: Record<string, unknown>) => LocalPlan;
  /** Ordinary pods in-thread (cached); big pods in the plan worker, which keeps their rules. */
  private readonly planAnyPod = (pod: Record<string, unknown>): PodPlan | Promise<PodPlan> =>
    isBigPod(pod) ? this.planPool.plan(pod, podName(pod)) : this.planPod(pod);
  /** Big pods' plans are made here, one at a time, off the event loop (ordinary pods never hop). */
  readonly planPool: PlanPool;
  /** One request or reconcile step per container at a time, shared by the handler and reconcile. */
  private readonly lock = new KeyedLock();
  readonly podIndex: PodIndexSync;
  private readonly lifecycle?: NodeLifecycle;
  /** Kubernetes Events on pods (Kubernetes mode, or injected). */
  readonly events?: PodEvents;
  private readonly excludeNamespaces: readonly string[];
  adminPort = 0;
  scrapePort = 0;

  constructor(
    private readonly settings: AgentSettings,
    private readonly log: Logger,
    private readonly deps: AgentDeps = {},
  ) {
    const capture = parseCaptureConfig(settings.capture);
    this.planPod = makePlanner(capture);
    this.excludeNamespaces = capture.excludeNamespaces;
    this.planPool = deps.planPool ?? new PlanPool(capture);
    this.state = new PodStateStore(settings.stateDir);
    this.pods = deps.pods ?? Agent.podSourceFor(settings, log);
    this.events =
      deps.events ??
      (this.pods instanceof KubePodSource
        ? new KubePodEvents(this.pods.kc, settings.nodeName ?? process.env.NODE_NAME ?? '', log)
        : undefined);
    const handler = createCniHandler({
      ...(this.events ? { events: this.events } : {}),
      excludeNamespaces: capture.excludeNamespaces,
      pods: this.pods,
      planPod: this.planAnyPod,
      applyPlan,
      readTables,
      removeTables,
      lock: this.lock,
      state: this.state,
      metrics: this.metrics,
      log,
      podLookupTimeoutMs: settings.podLookupTimeoutMs,
      isReady: () => this.ready,
    });
    this.lifecycle = deps.lifecycle ?? Agent.lifecycleFor(settings, this.pods, log);
    this.podIndex = new PodIndexSync({
      stateDir: settings.stateDir,
      pods: this.pods,
      planPod: (pod) => (isBigPod(pod) ? captureDecision(pod, capture) : this.planPod(pod)),
      excludeNamespaces: capture.excludeNamespaces,
      log,
    });
    this.server = new CniSocketServer({
      socketPath: settings.socketPath,
      handler,
      log,
      maxBodyBytes: settings.maxBodyBytes,
    });
  }

  private static podSourceFor(settings: AgentSettings, log: Logger): PodSource {
    if (settings.podsDir) return new DirPodSource(settings.podsDir, log);
    const nodeName = settings.nodeName ?? process.env.NODE_NAME;
    if (!nodeName) throw new Error('no pod source: set podsDir (standalone) or nodeName / $NODE_NAME (Kubernetes)');
    return new KubePodSource({
      nodeName,
      log,
      ...(settings.kubeconfig ? { kubeconfigPath: settings.kubeconfig } : {}),
    });
  }

  /** Only in Kubernetes mode, and only when a setting needs the API. */
  private static lifecycleFor(settings: AgentSettings, pods: PodSource, log: Logger): NodeLifecycle | undefined {
    const wanted = settings.removeReadinessTaint || (settings.install && settings.uninstallOnRemoval);
    if (!wanted || !(pods instanceof KubePodSource)) return undefined;
    return new KubeNodeLifecycle({
      kubeConfig: pods.kc,
      nodeName: settings.nodeName ?? process.env.NODE_NAME!,
      taintKey: settings.removeReadinessTaint ? settings.readinessTaintKey : '',
      log,
      ...(process.env.POD_NAME ? { podName: process.env.POD_NAME } : {}),
      ...(process.env.POD_NAMESPACE ? { podNamespace: process.env.POD_NAMESPACE } : {}),
    });
  }

  isReady(): boolean {
    return this.ready;
  }

  /** A promise nobody handled is a bug to log loudly, never a reason to drop every other pod. */
  private readonly onUnhandledRejection = (reason: unknown): void => {
    this.log.error({ err: errFields(reason) }, 'BUG: unhandled promise rejection; the agent keeps running');
  };

  async start(): Promise<void> {
    // Without the addon every shim connection fails its SO_PEERCRED check: refuse to start instead.
    loadAddon();
    process.on('unhandledRejection', this.onUnhandledRejection);
    const { loaded, problems, removedTemp } = this.state.load();
    for (const p of problems) this.log.warn({ problem: p }, 'ignored an unreadable pod state record');
    if (removedTemp > 0)
      this.log.info(
        { removedTemp, stateDir: this.settings.stateDir },
        'removed temp files of interrupted record writes',
      );
    if (this.settings.metricsAddress) {
      this.admin = new AdminServer({
        address: this.settings.metricsAddress,
        metrics: this.metrics,
        isReady: () => this.ready,
        notReadyReason: () => this.notReady,
      });
      this.adminPort = await this.admin.listen();
    }
    if (this.settings.metricsScrapeAddress) {
      this.scrape = new AdminServer({
        address: this.settings.metricsScrapeAddress,
        metricsOnly: true,
        metrics: this.metrics,
        isReady: () => this.ready,
        notReadyReason: () => this.notReady,
      });
      this.scrapePort = await this.scrape.listen();
    }
    this.notReady = 'waiting for the pod source';
    await this.pods.start();
    // Before serving: from here on an outage lets the pods recorded as not captured start.
    await this.podIndex.start();
    await this.server.listen();
    if (this.deps.installer) {
      this.notReady = 'chaining into the node CNI configuration';
      const installer = this.deps.installer;
      const since = Date.now();
      const nag = setInterval(() => {
        const last = installer.lastOutcome;
        const why = last?.error?.message ?? last?.reason ?? 'no check finished yet';
        this.log.warn(
          { dir: this.settings.cniConfDir, waitedSeconds: Math.round((Date.now() - since) / 1000), why },
          'still not chained into the CNI config; not ready, retrying',
        );
      }, INSTALL_WAIT_LOG_MS);
      try {
        await installer.start();
      } finally {
        clearInterval(nag);
      }
    }
    if (this.settings.warmStart) {
      this.notReady = 'warming the ADD path';
      await warmHotPath({
        planPod: this.planPod,
        applyPlan,
        readTables,
        log: this.log,
        stateDir: this.settings.stateDir,
      });
    }
    this.ready = true;
    // From now on CNI STATUS answers ready through an outage (the bootstrap gate opens).
    await writeReadyMarker(join(this.settings.stateDir, INDEX_FILE_NAME)).catch((e: Error) =>
      this.log.error(
        { dir: this.settings.stateDir, err: e.message },
        'cannot write the ready marker; CNI STATUS fails while the agent is down',
      ),
    );
    // Chained in, serving, pod source synced: now the scheduler may send pods here.
    await this.lifecycle?.markReady();
    this.log.info(
      {
        socket: this.settings.socketPath,
        admin: this.settings.metricsAddress || null,
        adminPort: this.adminPort,
        scrapePort: this.scrapePort || undefined,
        knownPods: loaded,
        pid: process.pid,
      },
      'meshcni agent ready',
    );
    this.reconcile().catch(() => undefined);
    if (this.settings.reconcileIntervalSeconds > 0) {
      this.reconcileTimer = setInterval(
        () => void this.reconcile().catch(() => undefined),
        this.settings.reconcileIntervalSeconds * 1000,
      );
      this.reconcileTimer.unref();
    }
  }

  /** One reconcile pass (never two at once). */
  reconcile(): Promise<ReconcileReport> {
    if (!this.reconciling) {
      this.reconciling = reconcileOnce({
        state: this.state,
        pods: this.pods,
        planPod: this.planAnyPod,
        readTables,
        applyPlan,
        policy: this.settings.repairPolicy,
        procRoot: this.settings.procRoot,
        ...(this.events ? { events: this.events } : {}),
        lock: this.lock,
        excludeNamespaces: this.excludeNamespaces,
        metrics: this.metrics,
        log: this.log,
        ...(this.pods.deletePod ? { deletePod: (k) => this.pods.deletePod!(k) } : {}),
      })
        .then((r) => {
          this.log.info(
            {
              checked: r.checked,
              intact: r.intact,
              repaired: r.repaired.length,
              deleted: r.deleted.length,
              reported: r.reported.length,
              uncaptured: r.uncaptured.length,
              captured: r.captured.length,
              errors: r.errors.length,
            },
            'reconcile pass done',
          );
          return r;
        })
        .finally(() => (this.reconciling = undefined));
    }
    return this.reconciling;
  }

  /**
   * Unchain only when meshcni leaves the node: on an upgrade or restart the entry stays, so new pods
   * wait (code 11) for the next agent instead of starting uncaptured.
   */
  private async unchainOnStop(): Promise<boolean> {
    if (this.settings.uninstallOnShutdown) return true;
    if (!this.lifecycle || !this.settings.uninstallOnRemoval) return false;
    return (await this.lifecycle.shutdownIntent()) === 'removal';
  }

  /** Graceful: stop accepting, finish in-flight requests, then stop everything else. */
  async stop(): Promise<void> {
    this.ready = false;
    this.notReady = 'shutting down';
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    const inFlight = this.server.requestsInFlight;
    await this.server.close();
    await this.reconciling?.catch(() => undefined);
    this.lifecycle?.stop();
    const unchain = this.deps.installer ? await this.unchainOnStop() : false;
    if (this.deps.installer) await this.deps.installer.stop({ uninstall: unchain });
    // Leaving the node: a later install starts behind the STATUS bootstrap gate again.
    if (unchain) rmSync(join(this.settings.stateDir, `${INDEX_FILE_NAME}${READY_MARKER_SUFFIX}`), { force: true });
    await this.podIndex.stop();
    await this.planPool.close();
    await this.pods.stop();
    await this.admin?.close();
    await this.scrape?.close();
    process.off('unhandledRejection', this.onUnhandledRejection);
    this.log.info({ finishedInFlight: inFlight }, 'meshcni agent stopped');
  }
}
