// Node-level capture settings (from the agent's config file). Defaults match Istio's.
import { CaptureError } from './errors.js';

export type Layout = 'iptables' | 'nft';
/** Whose rules to write: Istio 1.17.8's, 1.30.3's, or per pod from the proxy image's tag. */
export type IstioVersionSetting = '1.17' | '1.30' | 'auto';
const ISTIO_VERSIONS: readonly IstioVersionSetting[] = ['1.17', '1.30', 'auto'];

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
  /** The Istio release whose redirect rules are written (see istioRulesFor for `auto`). */
  istioVersion: IstioVersionSetting;
}

export const DEFAULT_CAPTURE_CONFIG: CaptureConfig = {
  excludeNamespaces: ['kube-system', 'istio-system'],
  layout: 'iptables',
  nftSets: true,
  dualStack: false,
  requireSidecarStatus: false,
  istioVersion: '1.17',
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
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== ''))
      throw new CaptureError('excludeNamespaces', v, 'must be a list of namespace names');
    c.excludeNamespaces = [...(v as string[])];
  }
  if (obj.layout !== undefined) {
    if (obj.layout !== 'iptables' && obj.layout !== 'nft')
      throw new CaptureError('layout', obj.layout, 'must be iptables or nft');
    c.layout = obj.layout;
  }
  if (obj.nftSets !== undefined) c.nftSets = bool('nftSets', obj.nftSets);
  if (obj.dualStack !== undefined) c.dualStack = bool('dualStack', obj.dualStack);
  if (obj.requireSidecarStatus !== undefined)
    c.requireSidecarStatus = bool('requireSidecarStatus', obj.requireSidecarStatus);
  if (obj.istioVersion !== undefined) {
    const v = obj.istioVersion;
    if (!ISTIO_VERSIONS.includes(v as IstioVersionSetting)) {
      throw new CaptureError('istioVersion', v, `must be one of ${ISTIO_VERSIONS.join(', ')} (a string)`);
    }
    c.istioVersion = v as IstioVersionSetting;
  }
  return c;
}
