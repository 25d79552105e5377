// Whether a pod is captured: the four conditions of the Alibaba Cloud Service Mesh CNI plug-in
// (plus Istio's sidecar-status check when the node asks for it). Every skip says why.
import type { CaptureConfig } from './config.js';
import type { PodView } from './pod.js';

export const PROXY_CONTAINER = 'istio-proxy';
export const INJECT_ANNOTATION = 'sidecar.istio.io/inject';
export const STATUS_ANNOTATION = 'sidecar.istio.io/status';

export type Decision = { capture: true } | { capture: false; reason: string };

export function decideCapture(pod: PodView, config: CaptureConfig): Decision {
  if (config.excludeNamespaces.includes(pod.namespace)) return { capture: false, reason: `namespace ${pod.namespace} is excluded` };
  if (!pod.containers.some((c) => c.name === PROXY_CONTAINER)) return { capture: false, reason: `no container named ${PROXY_CONTAINER}` };
  if (pod.containers.length <= 1) return { capture: false, reason: `only ${pod.containers.length} container (the sidecar alone is not captured)` };
  const inject = pod.annotations.get(INJECT_ANNOTATION);
  if (inject !== undefined && inject.trim().toLowerCase() === 'false') return { capture: false, reason: `annotation ${INJECT_ANNOTATION} is "${inject}"` };
  if (config.requireSidecarStatus && !pod.annotations.has(STATUS_ANNOTATION)) {
    return { capture: false, reason: `no ${STATUS_ANNOTATION} annotation (not injected by Istio's webhook)` };
  }
  return { capture: true };
}
