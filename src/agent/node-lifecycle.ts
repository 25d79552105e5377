// The agent's place in the cluster's lifecycle: it lifts a NoSchedule taint from its own node once it
// is ready (so the scheduler sends no pods to a node where they would all fail), and at SIGTERM tells
// a rolling upgrade (keep the chain: new pods wait with code 11) from a removal of its DaemonSet
// or from a DaemonSet that no longer selects this node (unchain, so pods start again), the way Istio's CNI agent checks whether its DaemonSet is going.
import { AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { placementProblem, type NodeTaint, type PodPlacement } from './daemonset-placement.js';

export type ShutdownIntent = 'upgrade' | 'removal';

export interface NodeLifecycle {
  /** Lifts the readiness taint (retrying in the background until it succeeds or stop()). */
  markReady(): Promise<void>;
  /** Upgrade or removal, from the agent's own DaemonSet; `upgrade` whenever in doubt (fail closed). */
  shutdownIntent(): Promise<ShutdownIntent>;
  stop(): void;
}

export interface KubeNodeLifecycleOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  /** The agent's own pod (downward API: POD_NAME / POD_NAMESPACE); needed for shutdownIntent. */
  podName?: string;
  podNamespace?: string;
  /** Taint key to remove; '' disables the taint handling. */
  taintKey: string;
  log: Logger;
  retryMs?: number;
}

interface Taint {
  key: string;
  effect?: string;
  value?: string;
}

const statusOf = (e: unknown): number | undefined =>
  e && typeof e === 'object' ? ((e as { code?: number }).code ?? (e as { statusCode?: number }).statusCode) : undefined;

export class KubeNodeLifecycle implements NodeLifecycle {
  private readonly core: CoreV1Api;
  private readonly apps: AppsV1Api;
  private stopped = false;
  private retry?: NodeJS.Timeout;

  constructor(private readonly opts: KubeNodeLifecycleOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.apps = opts.kubeConfig.makeApiClient(AppsV1Api);
  }

  /** One attempt: GET the node, and PATCH its taints without ours, guarded by its resourceVersion. */
  async removeTaintOnce(): Promise<'removed' | 'absent'> {
    const { nodeName, taintKey } = this.opts;
    const node = await this.core.readNode({ name: nodeName });
    const taints = (node.spec?.taints ?? []) as Taint[];
    const kept = taints.filter((t) => t.key !== taintKey);
    if (kept.length === taints.length) return 'absent';
    // The `test` fails the patch if the node changed since our GET (409/422): we retry from a fresh
    // GET rather than drop a taint someone else added in between.
    const body = [
      { op: 'test', path: '/metadata/resourceVersion', value: node.metadata?.resourceVersion ?? '' },
      { op: 'replace', path: '/spec/taints', value: kept },
    ];
    await this.core.patchNode({ name: nodeName, body }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch));
    return 'removed';
  }

  markReady(): Promise<void> {
    const { nodeName, taintKey, log } = this.opts;
    if (!taintKey) return Promise.resolve();
    return new Promise((resolve) => {
      const attempt = (n: number): void => {
        if (this.stopped) return resolve();
        this.removeTaintOnce().then(
          (r) => {
            log.info(
              { node: nodeName, taint: taintKey, action: r },
              r === 'removed'
                ? 'removed the readiness taint: the node takes pods now'
                : 'readiness taint not on the node',
            );
            resolve();
          },
          (e: unknown) => {
            const delay = Math.min((this.opts.retryMs ?? 500) * 2 ** Math.min(n, 5), 30_000);
            log.error(
              { node: nodeName, taint: taintKey, status: statusOf(e), err: (e as Error).message, retryInMs: delay },
              'cannot remove the readiness taint (needs nodes get+patch); retrying',
            );
            this.retry = setTimeout(() => attempt(n + 1), delay);
            this.retry.unref();
            resolve(); // readiness does not wait for the API; the retry goes on in the background
          },
        );
      };
      attempt(0);
    });
  }

  async shutdownIntent(): Promise<ShutdownIntent> {
    const { podName, podNamespace, log } = this.opts;
    if (!podName || !podNamespace) {
      log.warn({}, 'POD_NAME/POD_NAMESPACE not set: cannot tell an upgrade from a removal; keeping meshcni chained');
      return 'upgrade';
    }
    try {
      const pod = await this.core.readNamespacedPod({ name: podName, namespace: podNamespace });
      const owner = (pod.metadata?.ownerReferences ?? []).find((o) => o.kind === 'DaemonSet' && o.controller !== false);
      if (!owner) {
        log.warn(
          { pod: `${podNamespace}/${podName}` },
          'agent pod has no DaemonSet owner: treating shutdown as an upgrade',
        );
        return 'upgrade';
      }
      let ds;
      try {
        ds = await this.apps.readNamespacedDaemonSet({ name: owner.name, namespace: podNamespace });
      } catch (e) {
        if (statusOf(e) === 404) return this.removal(`DaemonSet ${podNamespace}/${owner.name} is gone`);
        throw e;
      }
      if (ds.metadata?.deletionTimestamp)
        return this.removal(`DaemonSet ${podNamespace}/${owner.name} is being deleted`);
      // Dropped from this node (nodeSelector, affinity, a taint it does not tolerate): no agent will
      // come back here, so staying chained would leave every captured pod waiting forever.
      const node = await this.core.readNode({ name: this.opts.nodeName });
      const problem = placementProblem((ds.spec?.template?.spec ?? {}) as PodPlacement, {
        name: this.opts.nodeName,
        labels: node.metadata?.labels ?? {},
        taints: (node.spec?.taints ?? []) as NodeTaint[],
      });
      if (problem)
        return this.removal(`DaemonSet ${podNamespace}/${owner.name} no longer runs on this node: ${problem}`);
      log.info(
        { daemonSet: `${podNamespace}/${owner.name}` },
        'shutdown is an upgrade or restart: meshcni stays chained; new pods wait with code 11',
      );
      return 'upgrade';
    } catch (e) {
      log.error(
        { pod: `${podNamespace}/${podName}`, status: statusOf(e), err: (e as Error).message },
        'cannot tell an upgrade from a removal; keeping meshcni chained (fail closed)',
      );
      return 'upgrade';
    }
  }

  private removal(why: string): ShutdownIntent {
    this.opts.log.warn(
      { reason: why },
      'meshcni is being removed from this node: unchaining it so pods start without it',
    );
    return 'removal';
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
  }
}
