// Runs a DaemonSet's container with podman the way a kubelet would run it on a node: every option
// derived from the manifest (host namespaces, hostPath mounts and their propagation, capabilities,
// read-only root, env, command, args, ConfigMap and emptyDir volumes), so a test checks the manifest
// itself. Anything the manifest says that we cannot map is an error, never silently dropped.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';

type Obj = Record<string, unknown>;

interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  mountPropagation?: 'None' | 'HostToContainer' | 'Bidirectional';
}

interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string };
  emptyDir?: Obj;
}

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  volumeMounts?: VolumeMount[];
  resources?: { limits?: { memory?: string } };
  securityContext?: {
    privileged?: boolean;
    runAsUser?: number;
    runAsGroup?: number;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
}

export interface PodTemplate {
  /** The DaemonSet's namespace: its pods' metadata.namespace. */
  namespace: string;
  hostNetwork: boolean;
  hostPID: boolean;
  containers: Container[];
  volumes: Volume[];
}

/** The pod template of the DaemonSet in a manifest file. */
export function daemonSetPod(file: string): PodTemplate {
  const ds = parseYaml(readFileSync(file, 'utf8')) as Obj;
  if (ds.kind !== 'DaemonSet') throw new Error(`${file}: kind ${String(ds.kind)}, expected DaemonSet`);
  const spec = ((ds.spec as Obj).template as Obj).spec as Obj;
  return {
    namespace: String((ds.metadata as Obj | undefined)?.namespace ?? 'default'),
    hostNetwork: spec.hostNetwork === true,
    hostPID: spec.hostPID === true,
    containers: spec.containers as Container[],
    volumes: (spec.volumes ?? []) as Volume[],
  };
}

/** data of the named ConfigMap in a manifest file (one or more documents). */
export function configMapData(file: string, name: string): Record<string, string> {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    const o = doc.toJS() as Obj | null;
    if (o?.kind === 'ConfigMap' && (o.metadata as Obj).name === name) return o.data as Record<string, string>;
  }
  throw new Error(`${file}: no ConfigMap named ${name}`);
}

export interface NodeBinding {
  /** Container name in the pod template. */
  container: string;
  image: string;
  /** podman container name (unique per test run). */
  name: string;
  /** Value for env fieldRef spec.nodeName. */
  nodeName: string;
  /** Where ConfigMap and emptyDir contents are written for this run. */
  workDir: string;
  /** ConfigMap name → data (already adjusted by the caller if it must be). */
  configMaps: Record<string, Record<string, string>>;
  /** Mounts the test adds to the manifest's (e.g. a pods dir in standalone mode): [host, container, ro]. */
  extraMounts?: [string, string, boolean][];
}

/**
 * Kubernetes has no ulimit field: a pod gets the limits the node's runtime runs under. podman would
 * instead raise nofile and nproc to its own defaults, which a host without CAP_SYS_RESOURCE to spare
 * refuses; so pass this process's hard limits (nproc no higher than pid_max, as the kernel holds it).
 */
function nodeUlimits(): string[] {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const hard = (label: string): number => {
    const m = new RegExp(`^${label}\\s+\\S+\\s+(\\S+)`, 'm').exec(limits);
    const v = m?.[1] === 'unlimited' ? Infinity : Number(m?.[1]);
    if (!(v > 0)) throw new Error(`/proc/self/limits: no hard limit for ${label}`);
    return v;
  };
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
  const nofile = hard('Max open files');
  const nproc = Math.min(hard('Max processes'), pidMax);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

const PROPAGATION: Record<string, string> = { None: 'rprivate', HostToContainer: 'rslave', Bidirectional: 'rshared' };

/**
 * `podman run` arguments for one container of the template. hostPath sources are used as they are:
 * run podman inside a NodeRoot that remaps them.
 */
export function podmanRunArgs(pod: PodTemplate, b: NodeBinding): string[] {
  const c = pod.containers.find((x) => x.name === b.container);
  if (!c) throw new Error(`no container ${b.container} in the pod template`);
  const args = ['run', '--detach', '--name', b.name, '--runtime', 'runc', '--pull', 'never', ...nodeUlimits()];
  if (pod.hostNetwork) args.push('--network', 'host');
  if (pod.hostPID) args.push('--pid', 'host');

  const sc = c.securityContext ?? {};
  if (sc.privileged) args.push('--privileged');
  if (sc.runAsUser !== undefined) args.push('--user', `${sc.runAsUser}:${sc.runAsGroup ?? sc.runAsUser}`);
  if (sc.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');
  for (const cap of sc.capabilities?.drop ?? []) args.push('--cap-drop', cap);
  for (const cap of sc.capabilities?.add ?? []) args.push('--cap-add', cap);
  // Only the volumes the manifest declares are writable: no tmpfs podman would add by itself.
  if (sc.readOnlyRootFilesystem) args.push('--read-only', '--read-only-tmpfs=false');
  if (sc.seccompProfile && sc.seccompProfile.type !== 'RuntimeDefault')
    throw new Error(`seccompProfile ${sc.seccompProfile.type} is not mapped`);
  if (c.resources?.limits?.memory) args.push('--memory', c.resources.limits.memory.replace(/i$/, '').toLowerCase());

  for (const e of c.env ?? []) {
    if (e.value !== undefined) args.push('--env', `${e.name}=${e.value}`);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') args.push('--env', `${e.name}=${b.nodeName}`);
    // A standalone run has no API server to ask about its pod; the names are still passed as a kubelet would.
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') args.push('--env', `${e.name}=${b.name}`);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace')
      args.push('--env', `${e.name}=${pod.namespace}`);
    else
      throw new Error(
        `env ${e.name}: only value and fieldRefs spec.nodeName, metadata.name and metadata.namespace are mapped`,
      );
  }

  for (const m of c.volumeMounts ?? []) {
    const v = pod.volumes.find((x) => x.name === m.name);
    if (!v) throw new Error(`volumeMount ${m.name}: no such volume`);
    const propagation = PROPAGATION[m.mountPropagation ?? 'None'];
    if (!propagation) throw new Error(`volumeMount ${m.name}: mountPropagation ${m.mountPropagation} is not mapped`);
    if (v.hostPath) {
      const opts = [propagation, ...(m.readOnly ? ['ro'] : [])];
      args.push('--volume', `${v.hostPath.path}:${m.mountPath}:${opts.join(',')}`);
    } else if (v.configMap) {
      const data = b.configMaps[v.configMap.name];
      if (!data) throw new Error(`volume ${v.name}: ConfigMap ${v.configMap.name} not given`);
      const dir = join(b.workDir, 'configmap', v.name);
      mkdirSync(dir, { recursive: true });
      for (const [k, text] of Object.entries(data)) writeFileSync(join(dir, k), text);
      args.push('--volume', `${dir}:${m.mountPath}:ro`);
    } else if (v.emptyDir) {
      args.push('--mount', `type=tmpfs,destination=${m.mountPath}${m.readOnly ? ',ro' : ''}`);
    } else {
      throw new Error(`volume ${v.name}: only hostPath, configMap and emptyDir are mapped`);
    }
  }
  for (const [host, ctr, ro] of b.extraMounts ?? []) args.push('--volume', `${host}:${ctr}${ro ? ':ro' : ''}`);

  if (c.command?.length) args.push('--entrypoint', JSON.stringify(c.command));
  args.push(b.image, ...(c.args ?? []));
  return args;
}

/** The hostPath volumes of a template: the paths a node must provide. */
export function hostPaths(pod: PodTemplate): { path: string; type?: string }[] {
  return pod.volumes.flatMap((v) => (v.hostPath ? [v.hostPath] : []));
}
