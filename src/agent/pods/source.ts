// Where the agent learns about pods: the Kubernetes API (informer) or a directory of manifests.

export interface PodKey {
  namespace: string;
  name: string;
  /** When given, a pod with another uid (recreated under the same name) does not count. */
  uid?: string;
}

export interface PodSource {
  /** The pod object (plain JSON as the API returns it), or null when it does not exist; waits up to timeoutMs. */
  lookup(key: PodKey, opts: { timeoutMs: number }): Promise<Record<string, unknown> | null>;
  /** Every pod currently known on this node (for the reconciler). */
  list(): Promise<Record<string, unknown>[]>;
  start(): Promise<void>;
  stop(): Promise<void>;
  ready(): boolean;
  /** Deletes a pod through the API (the `delete` repair policy); absent where it cannot. */
  deletePod?(key: PodKey): Promise<void>;
  /** Calls cb after the set of pods (or any pod) changed; the pod index follows changes through it. */
  onChange?(cb: () => void): void;
}

export const podKeyOf = (obj: Record<string, unknown>): PodKey | null => {
  const meta = obj.metadata as { namespace?: unknown; name?: unknown; uid?: unknown } | undefined;
  if (!meta || typeof meta.name !== 'string') return null;
  const key: PodKey = {
    namespace: typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default',
    name: meta.name,
  };
  if (typeof meta.uid === 'string' && meta.uid) key.uid = meta.uid;
  return key;
};

export const keyString = (k: { namespace: string; name: string }): string => `${k.namespace}/${k.name}`;

export const uidMatches = (want: PodKey, obj: Record<string, unknown>): boolean => {
  const have = podKeyOf(obj)?.uid;
  return !want.uid || have === undefined || have === want.uid;
};
