// Kubernetes Events on a pod for what the agent did to it — captured in place, repaired, deleted,
// an ADD refused — so `kubectl describe pod` says it, as istio-cni and linkerd-cni do. Sending is
// fire-and-forget: an event that cannot be created is logged, never fails the action it reports.
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface PodRef {
  namespace: string;
  name: string;
  uid?: string;
}

export type PodEventReason =
  'CapturedInPlace' | 'CaptureInPlaceRefused' | 'RulesRepaired' | 'DeletedForCapture' | 'CaptureRefused';

export interface PodEvents {
  emit(pod: PodRef, type: 'Normal' | 'Warning', reason: PodEventReason, message: string): void;
}

/** Event messages are capped by the API (1 KiB in events.k8s.io); keep the start, which names the problem. */
const MAX_MESSAGE = 1024;

export class KubePodEvents implements PodEvents {
  private readonly core: CoreV1Api;
  private seq = 0;
  /** Sends still in flight (tests await them). */
  readonly pending = new Set<Promise<void>>();

  constructor(
    kc: KubeConfig,
    private readonly nodeName: string,
    private readonly log: Logger,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  emit(pod: PodRef, type: 'Normal' | 'Warning', reason: PodEventReason, message: string): void {
    const now = new Date();
    const body = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: {
        name: `${pod.name}.meshcni.${now.getTime().toString(36)}${(++this.seq).toString(36)}`.slice(0, 253),
        namespace: pod.namespace,
      },
      involvedObject: {
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: pod.namespace,
        name: pod.name,
        ...(pod.uid ? { uid: pod.uid } : {}),
      },
      type,
      reason,
      message: message.slice(0, MAX_MESSAGE),
      source: { component: 'meshcni-agent', host: this.nodeName },
      reportingComponent: 'meshcni.io/agent',
      reportingInstance: this.nodeName,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    const p = this.core
      .createNamespacedEvent({ namespace: pod.namespace, body: body as never })
      .then(
        () => undefined,
        (e: Error) =>
          this.log.warn(
            { namespace: pod.namespace, pod: pod.name, reason, err: e.message },
            'cannot create a Kubernetes Event (needs events create)',
          ),
      )
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}
