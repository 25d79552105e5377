// A minimal CRI client: what a kubelet sends a container runtime to make and remove a pod sandbox and its containers,
// over the runtime's unix socket. Shared by the image e2e test and bench/cri.ts.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = fileURLToPath(new URL('./cri.proto', import.meta.url));

/** The pod as the kubelet names it in PodSandboxMetadata. */
export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface SandboxStatus {
  id: string;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  ip: string;
  /** The sandbox's pause process (host pid namespace), from containerd's verbose info. */
  pid: number;
}

/** A container as the kubelet describes it to CreateContainer (the slice meshcni's bench needs). */
export interface ContainerSpec {
  name: string;
  /** An image already in the runtime's store (imported, not pulled). */
  image: string;
  command?: string[];
  args?: string[];
  capabilities?: string[];
}

export interface ContainerState {
  state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
  exitCode: number;
  reason: string;
  message: string;
}

type Unary = (
  req: object,
  opts: { deadline: Date },
  cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void,
) => void;

/** One CRI RuntimeService connection. Every call has a deadline so a wedged runtime fails the caller. */
export class CriClient {
  private readonly client: grpc.Client & Record<string, Unary>;

  /** cgroupParent: the kubelet's per-pod cgroup parent; a test gives its own so it can remove it. */
  constructor(
    readonly socket: string,
    private readonly timeoutMs = 60_000,
    private readonly cgroupParent = '',
  ) {
    const def = protoLoader.loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } };
    };
    this.client = new pkg.runtime.v1.RuntimeService(
      `unix://${socket}`,
      grpc.credentials.createInsecure(),
    ) as grpc.Client & Record<string, Unary>;
  }

  private call(method: string, req: object): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.client[method]!.call(this.client, req, { deadline: new Date(Date.now() + this.timeoutMs) }, (err, res) => {
        if (err) reject(new Error(`CRI ${method} via ${this.socket}: ${err.details || err.message}`));
        else resolve(res);
      });
    });
  }

  async version(): Promise<{ runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }> {
    const r = await this.call('Version', { version: 'v1' });
    return {
      runtimeName: String(r.runtimeName),
      runtimeVersion: String(r.runtimeVersion),
      runtimeApiVersion: String(r.runtimeApiVersion),
    };
  }

  /** RunPodSandbox as a kubelet sends it (metadata, hostname, labels naming the pod); returns the id. */
  async runPodSandbox(pod: PodRef, attempt = 0): Promise<string> {
    const r = await this.call('RunPodSandbox', { config: this.sandboxConfig(pod, attempt) });
    return String(r.podSandboxId);
  }

  private sandboxConfig(pod: PodRef, attempt = 0): object {
    return {
      metadata: { name: pod.name, namespace: pod.namespace, uid: pod.uid, attempt },
      hostname: pod.name,
      labels: {
        'io.kubernetes.pod.name': pod.name,
        'io.kubernetes.pod.namespace': pod.namespace,
        'io.kubernetes.pod.uid': pod.uid,
      },
      annotations: {},
      // As a kubelet does: one `pod<uid>` cgroup per pod under the parent (what capture in place finds).
      linux: { cgroupParent: this.cgroupParent ? `${this.cgroupParent}/pod${pod.uid}` : '' },
    };
  }

  /** CreateContainer in a sandbox (sharing its netns, as every pod container does); returns the id.
   * `capabilities` are added to the runtime's default set (istio-init's NET_ADMIN, NET_RAW). */
  async createContainer(sandboxId: string, pod: PodRef, c: ContainerSpec): Promise<string> {
    const config = {
      metadata: { name: c.name, attempt: 0 },
      image: { image: c.image },
      command: c.command ?? [],
      args: c.args ?? [],
      labels: { 'io.kubernetes.container.name': c.name, 'io.kubernetes.pod.uid': pod.uid },
      annotations: {},
      linux: { securityContext: { capabilities: { addCapabilities: c.capabilities ?? [], dropCapabilities: [] } } },
    };
    const r = await this.call('CreateContainer', {
      podSandboxId: sandboxId,
      config,
      sandboxConfig: this.sandboxConfig(pod),
    });
    return String(r.containerId);
  }

  async startContainer(id: string): Promise<void> {
    await this.call('StartContainer', { containerId: id });
  }

  async stopContainer(id: string, timeoutSeconds = 0): Promise<void> {
    await this.call('StopContainer', { containerId: id, timeout: String(timeoutSeconds) });
  }

  async removeContainer(id: string): Promise<void> {
    await this.call('RemoveContainer', { containerId: id });
  }

  async containerStatus(id: string): Promise<ContainerState> {
    const r = await this.call('ContainerStatus', { containerId: id });
    const s = r.status as { state: ContainerState['state']; exitCode: number; reason: string; message: string };
    return { state: s.state, exitCode: s.exitCode, reason: s.reason, message: s.message };
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { podSandboxId: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { podSandboxId: id });
  }

  async podSandboxStatus(id: string): Promise<SandboxStatus> {
    const r = await this.call('PodSandboxStatus', { podSandboxId: id, verbose: true });
    const status = r.status as { id: string; state: SandboxStatus['state']; network?: { ip?: string } };
    const info = (r.info as Record<string, string> | undefined)?.info;
    const pid = info ? Number((JSON.parse(info) as { pid?: unknown }).pid) : NaN;
    if (!Number.isInteger(pid) || pid <= 0)
      throw new Error(`CRI PodSandboxStatus ${id}: no pause pid in the verbose info (${String(info).slice(0, 200)})`);
    return { id: status.id, state: status.state, ip: status.network?.ip ?? '', pid };
  }

  close(): void {
    this.client.close();
  }
}
