// Shared benchmark plumbing: timed child processes, fresh pod namespaces with a veth already set up
// (as the primary CNI leaves them), the agent as a child process, and /proc readings of a process.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
export const SHIM = join(ROOT, 'build/Release/meshcni');
export const NOOP = join(ROOT, 'build/bench/noop');

/** Builds the static no-op binary that stands for the exec floor. */
export function buildNoop(): string {
  if (!existsSync(NOOP)) {
    mkdirSync(join(ROOT, 'build/bench'), { recursive: true });
    execFileSync('gcc', ['-static', '-Os', '-s', '-o', NOOP, join(ROOT, 'bench/noop.c')]);
  }
  return NOOP;
}

let nsCounter = 0;

/** A pod netns with eth0 (one end of a veth whose other end stays on the host), addressed, up. */
export class PodNetns {
  readonly name: string;
  readonly path: string;
  readonly hostIf: string;

  constructor(prefix: string) {
    nsCounter++;
    this.name = `mcb-${prefix}-${process.pid}-${nsCounter}`;
    this.path = `/var/run/netns/${this.name}`;
    this.hostIf = `mcb${process.pid % 1000}v${nsCounter}`.slice(0, 15);
  }

  create(index: number): this {
    const a = 10 + Math.floor(index / 250) % 200;
    const b = (index % 250) + 1;
    execFileSync('ip', ['netns', 'add', this.name]);
    execFileSync('ip', ['link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.name]);
    execFileSync('ip', ['-n', this.name, 'addr', 'add', `10.251.${a}.${b}/32`, 'dev', 'eth0']);
    execFileSync('ip', ['-n', this.name, 'link', 'set', 'eth0', 'up']);
    execFileSync('ip', ['-n', this.name, 'link', 'set', 'lo', 'up']);
    return this;
  }

  destroy(): void {
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.hostIf], { stdio: 'ignore' });
  }
}

/** CPU time (user + system) of a process in ms, from /proc/PID/stat. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The built agent as a child process, standalone with a pods directory. */
export async function startAgent(dir: string, extra: Record<string, unknown> = {}): Promise<{ child: ChildProcess; socketPath: string; log: () => string }> {
  const socketPath = join(dir, 'run', 'cni.sock');
  const cfg = join(dir, 'config.yaml');
  const conf = { podsDir: join(dir, 'pods'), socketPath, stateDir: join(dir, 'state'), metricsAddress: '', reconcileIntervalSeconds: 0, logLevel: 'warn', ...extra };
  writeFileSync(cfg, Object.entries(conf).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n') + '\n');
  let log = '';
  const child = spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const deadline = Date.now() + 20_000;
  while (!existsSync(socketPath)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`agent did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 100));
  return { child, socketPath, log: () => log };
}

export function stopAgent(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (child.exitCode !== null) return r();
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}

/** The CNI environment and stdin for one ADD of a pod through the shim. */
export function shimAdd(socketPath: string, netns: string, pod: { namespace: string; name: string }, containerId: string): { env: NodeJS.ProcessEnv; input: string } {
  return {
    env: {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: containerId,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name}`,
      CNI_PATH: '/usr/lib/cni',
    },
    input: JSON.stringify({
      cniVersion: '1.0.0',
      name: 'bench',
      type: 'meshcni',
      socketPath,
      prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: netns }], ips: [{ address: '10.251.0.2/32', interface: 0 }] },
    }),
  };
}
