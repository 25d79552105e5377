// Whether a pod is captured: the four conditions of the Alibaba Cloud Service Mesh CNI plug-in, with
// the skips Istio's own plug-in makes (cni/pkg/plugin/plugin.go CmdAdd, at 1.17.8 and 1.30.3): a pod
// that programs itself (istio-init), a proxy that is not a sidecar, DISABLE_ENVOY, the inject label,
// a pod on the node's network (plus Istio's sidecar-status check when the node asks for it).
// Every skip says why.
import type { CaptureConfig } from './config.js';
import { INJECT_KEY, parseGoBool, PROXY_CONTAINER, proxyContainer, type PodView } from './pod.js';

export const STATUS_ANNOTATION = 'sidecar.istio.io/status';
/** The init container of a pod injected without CNI: it writes its own rules, so the pod is not ours. */
export const ISTIO_INIT_CONTAINER = 'istio-init';

export type Decision = { capture: true } | { capture: false; reason: string };

/** Injection turned off: Go's false (Istio), or "false" in any case and spacing (the seed's rule). */
const injectOff = (v: string): boolean => parseGoBool(v) === false || v.trim().toLowerCase() === 'false';

export function decideCapture(pod: PodView, config: CaptureConfig): Decision {
  const skip = (reason: string): Decision => ({ capture: false, reason });
  if (config.excludeNamespaces.includes(pod.namespace)) return skip(`namespace ${pod.namespace} is excluded`);
  // The kubelet runs no CNI for these, and their netns is the node's: never ours to program.
  if (pod.hostNetwork) return skip('hostNetwork pod (it uses the node network namespace)');
  if (pod.initContainers.some((c) => c.name === ISTIO_INIT_CONTAINER)) {
    return skip(`has its own ${ISTIO_INIT_CONTAINER} init container (the pod programs its own rules)`);
  }
  const proxy = proxyContainer(pod);
  if (!proxy) return skip(`no container named ${PROXY_CONTAINER} (nor an init container of that name)`);
  const disable = proxy.env.get('DISABLE_ENVOY');
  if (disable !== undefined && parseGoBool(disable) === true)
    return skip(`DISABLE_ENVOY=${disable} on ${PROXY_CONTAINER}`);
  if (proxy.args && proxy.args.length >= 2 && proxy.args[0] === 'proxy' && proxy.args[1] !== 'sidecar') {
    return skip(`${PROXY_CONTAINER} is a ${JSON.stringify(proxy.args[1])} proxy, not a sidecar`);
  }
  // Istio counts init containers and containers together (a native sidecar is an init container).
  const count = pod.initContainers.length + pod.containers.length;
  if (count <= 1) return skip(`only ${count} container (the sidecar alone is not captured)`);
  if (pod.injectLabel !== undefined) {
    if (injectOff(pod.injectLabel)) return skip(`label ${INJECT_KEY} is "${pod.injectLabel}"`);
  } else {
    const inject = pod.annotations.get(INJECT_KEY);
    if (inject !== undefined && injectOff(inject)) return skip(`annotation ${INJECT_KEY} is "${inject}"`);
  }
  if (config.requireSidecarStatus && !pod.annotations.has(STATUS_ANNOTATION)) {
    return skip(`no ${STATUS_ANNOTATION} annotation (not injected by Istio's webhook)`);
  }
  return { capture: true };
}
