// A pod sandbox the way a container runtime makes one: a named netns, a conflist run through real
// CNI plug-ins (bridge + host-local + loopback from containernetworking-plugins, then meshcni), and
// a teardown that removes everything it created even when a step failed.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runConfList, type ConfList, type CniInvocation } from './cni-exec.js';

export const UPSTREAM_CNI_DIR = '/usr/lib/cni';

export interface SandboxNetwork {
  /** Bridge on the host side; the gateway address lives on it (an address of this machine). */
  bridge: string;
  /** e.g. 10.248.0.0/24; the gateway is .1, pods get addresses from host-local. */
  subnet: string;
  /** host-local's state directory (kept out of /var/lib/cni). */
  ipamDataDir: string;
}

export interface MeshcniEntry {
  socketPath: string;
  excludeNamespaces?: string[];
  timeoutSeconds?: number;
}

/** bridge + host-local, loopback, then the meshcni entry: the chain a node with meshcni runs. */
export function podConfList(net: SandboxNetwork, meshcni: MeshcniEntry | null, cniVersion = '1.0.0'): ConfList {
  const plugins: Record<string, unknown>[] = [
    {
      type: 'bridge',
      bridge: net.bridge,
      isGateway: true,
      ipMasq: false,
      hairpinMode: false,
      ipam: { type: 'host-local', ranges: [[{ subnet: net.subnet }]], dataDir: net.ipamDataDir },
    },
    { type: 'loopback' },
  ];
  if (meshcni) plugins.push({ type: 'meshcni', ...meshcni });
  return { cniVersion, name: 'meshcni-demo', plugins };
}

export interface Pod {
  namespace: string;
  name: string;
  uid?: string;
}

export class Sandbox {
  readonly netnsName: string;
  readonly netnsPath: string;
  readonly containerId: string;
  result: Record<string, unknown> | null = null;

  constructor(
    readonly id: string,
    readonly pod: Pod,
    private readonly conf: ConfList,
    private readonly shimPath: string,
  ) {
    this.netnsName = `mcni-${id}`;
    this.netnsPath = `/var/run/netns/${this.netnsName}`;
    this.containerId = `c${id.replace(/[^A-Za-z0-9]/g, '')}`.padEnd(12, '0');
  }

  private invocation(command: CniInvocation['command']): CniInvocation {
    const args = [`IgnoreUnknown=1`, `K8S_POD_NAMESPACE=${this.pod.namespace}`, `K8S_POD_NAME=${this.pod.name}`];
    if (this.pod.uid) args.push(`K8S_POD_UID=${this.pod.uid}`);
    return {
      command,
      containerId: this.containerId,
      netns: this.netnsPath,
      ifName: 'eth0',
      args: args.join(';'),
      path: [UPSTREAM_CNI_DIR],
    };
  }

  private locate = (type: string): string => (type === 'meshcni' ? this.shimPath : join(UPSTREAM_CNI_DIR, type));

  /** Creates the netns (as the runtime does before calling CNI). */
  create(): void {
    execFileSync('ip', ['netns', 'add', this.netnsName]);
  }

  /** CNI ADD through the whole chain; returns the final result. */
  async add(): Promise<Record<string, unknown>> {
    this.result = await runConfList(this.conf, this.invocation('ADD'), this.locate);
    return this.result!;
  }

  async check(): Promise<void> {
    await runConfList(this.conf, this.invocation('CHECK'), this.locate, this.result);
  }

  /** The pod's IPv4 address from the ADD result. */
  address(): string | undefined {
    const ips = (this.result?.ips ?? []) as { address?: string }[];
    return ips.map((i) => i.address?.split('/')[0]).find((a) => a && !a.includes(':'));
  }

  /** CNI DEL through the chain (best effort, like a runtime), then the netns goes. */
  async destroy(): Promise<void> {
    try {
      if (existsSync(this.netnsPath)) await runConfList(this.conf, this.invocation('DEL'), this.locate, this.result);
    } finally {
      spawnSync('ip', ['netns', 'del', this.netnsName], { stdio: 'ignore' });
    }
  }
}

/** Removes the host-side bridge a chain created (bridge plug-in DEL leaves it in place). */
export function removeBridge(name: string): void {
  spawnSync('ip', ['link', 'del', name], { stdio: 'ignore' });
}
