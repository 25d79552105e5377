// A minimal CRI client: what a kubelet sends a container runtime to make and remove a pod sandbox,
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

type Unary = (req: object, opts: { deadline: Date }, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;

/** One CRI RuntimeService connection. Every call has a deadline so a wedged runtime fails the caller. */
export class CriClient {
  private readonly client: grpc.Client & Record<string, Unary>;

  /** cgroupParent: the kubelet's per-pod cgroup parent; a test gives its own so it can remove it. */
  constructor(readonly socket: string, private readonly timeoutMs = 60_000, private readonly cgroupParent = '') {
    const def = protoLoader.loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };
    this.client = new pkg.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Unary>;
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
    return { runtimeName: String(r.runtimeName), runtimeVersion: String(r.runtimeVersion), runtimeApiVersion: String(r.runtimeApiVersion) };
  }

  /** RunPodSandbox as a kubelet sends it (metadata, hostname, labels naming the pod); returns the id. */
  async runPodSandbox(pod: PodRef, attempt = 0): Promise<string> {
    const config = {
      metadata: { name: pod.name, namespace: pod.namespace, uid: pod.uid, attempt },
      hostname: pod.name,
      labels: { 'io.kubernetes.pod.name': pod.name, 'io.kubernetes.pod.namespace': pod.namespace, 'io.kubernetes.pod.uid': pod.uid },
      annotations: {},
      // As a kubelet does: one `pod<uid>` cgroup per pod under the parent (what capture in place finds).
      linux: { cgroupParent: this.cgroupParent ? `${this.cgroupParent}/pod${pod.uid}` : '' },
    };
    const r = await this.call('RunPodSandbox', { config });
    return String(r.podSandboxId);
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
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`CRI PodSandboxStatus ${id}: no pause pid in the verbose info (${String(info).slice(0, 200)})`);
    return { id: status.id, state: status.state, ip: status.network?.ip ?? '', pid };
  }

  close(): void {
    this.client.close();
  }
}
