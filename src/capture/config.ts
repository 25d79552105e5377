// Node-level capture settings (from the agent's config file). Defaults match Istio's.
import { CaptureError } from './errors.js';

export type Layout = 'iptables' | 'nft';

export interface CaptureConfig {
  /** Pods in these namespaces are never captured. */
  excludeNamespaces: readonly string[];
  /** `iptables`: exactly what iptables-nft writes; `nft`: Istio's native nftables layout. */
  layout: Layout;
  /** nft layout: port and CIDR lists as named sets (rule count independent of list length). */
  nftSets: boolean;
  /** Program IPv6 rules for every captured pod (else only when the pod asks with ISTIO_DUAL_STACK). */
  dualStack: boolean;
  /** Also require the `sidecar.istio.io/status` annotation (Istio's own plug-in does). */
  requireSidecarStatus: boolean;
}

export const DEFAULT_CAPTURE_CONFIG: CaptureConfig = {
  excludeNamespaces: ['kube-system', 'istio-system'],
  layout: 'iptables',
  nftSets: true,
  dualStack: false,
  requireSidecarStatus: false,
};

const bool = (key: string, v: unknown): boolean => {
  if (typeof v !== 'boolean') throw new CaptureError(key, v, 'must be true or false');
  return v;
};

/** Reads the capture keys of a config object; other keys are left to the caller. */
export function parseCaptureConfig(obj: Record<string, unknown>): CaptureConfig {
  const c: CaptureConfig = { ...DEFAULT_CAPTURE_CONFIG };
  if (obj.excludeNamespaces !== undefined) {
    const v = obj.excludeNamespaces;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) throw new CaptureError('excludeNamespaces', v, 'must be a list of namespace names');
    c.excludeNamespaces = [...(v as string[])];
  }
  if (obj.layout !== undefined) {
    if (obj.layout !== 'iptables' && obj.layout !== 'nft') throw new CaptureError('layout', obj.layout, 'must be iptables or nft');
    c.layout = obj.layout;
  }
  if (obj.nftSets !== undefined) c.nftSets = bool('nftSets', obj.nftSets);
  if (obj.dualStack !== undefined) c.dualStack = bool('dualStack', obj.dualStack);
  if (obj.requireSidecarStatus !== undefined) c.requireSidecarStatus = bool('requireSidecarStatus', obj.requireSidecarStatus);
  return c;
}
