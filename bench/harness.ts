// Shared benchmark plumbing: timed child processes, fresh pod namespaces with a veth already set up
// (as the primary CNI leaves them), the agent as a child process, and /proc readings of a process.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
export const SHIM = join(ROOT, 'build/Release/meshcni');
export const NOOP = join(ROOT, 'build/bench/noop');

const TMPFS_MAGIC = 0x01021994;

/**
 * A temp dir for the agent's socket and state: on tmpfs when /dev/shm is one, as the deployed
 * agent's /var/run/meshcni is (a node's /run). On a disk file system each record write costs a few
 * hundred microseconds of metadata work that a node never pays.
 */
export function benchTempDir(prefix: string): string {
  let root = tmpdir();
  try {
    if (statfsSync('/dev/shm').type === TMPFS_MAGIC) root = '/dev/shm';
  } catch {
    // no /dev/shm: the default temp dir
  }
  return mkdtempSync(join(root, prefix));
}

/** The C compiler the shim is built with (native/shim/Makefile): musl-gcc when there, else gcc. */
export function shimCompiler(): string {
  const r = spawnSync('sh', ['-c', 'command -v musl-gcc'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : 'gcc';
}

/**
 * Builds the static no-op binary that stands for the exec floor, with the shim's own compiler and
 * libc: a floor built against a slower-starting libc would flatter the shim.
 */
export function buildNoop(): string {
  const cc = shimCompiler();
  const stamp = `${NOOP}.cc`;
  if (!existsSync(NOOP) || !existsSync(stamp) || readFileSync(stamp, 'utf8') !== cc) {
    mkdirSync(join(ROOT, 'build/bench'), { recursive: true });
    execFileSync(cc, ['-static', '-Os', '-s', '-o', NOOP, join(ROOT, 'bench/noop.c')]);
    writeFileSync(stamp, cc);
  }
  return NOOP;
}

let nsCounter = 0;

/** Runs `ip -batch` on the lines given (one process for all of them). */
function ipBatch(lines: string[], check: boolean): void {
  if (lines.length === 0) return;
  const r = spawnSync('ip', ['-force', '-batch', '-'], {
    input: lines.join('\n') + '\n',
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  if (check && r.status !== 0) throw new Error(`ip -batch failed (${r.status}): ${r.stderr.toString().trim()}`);
}

/**
 * Namespaces made during a timed section and torn down after it, all at once. Deleting a netns
 * queues seconds of kernel work (cleanup_net: RCU grace periods, hook and conntrack teardown) that
 * runs on a kworker while the next samples are taken, and lands on whichever path runs first; so no
 * namespace is deleted while a section is being timed. `settle()` deletes them and waits it out.
 */
export class NetnsGroup {
  private readonly members: PodNetns[] = [];
  private readonly bare: string[] = [];

  /**
   * `count` pod netns, each with eth0 on a veth, addressed and up as the primary CNI leaves it
   * (indexes from, from+1, …), made ahead of a timed stretch: one `ip`
   * process for all the namespaces and veths, one per namespace for its address and links. A
   * process that spawns children pays for it afterwards (its pages are copy-on-write after each
   * fork, and every first write faults), so the bench process makes namespaces in bulk between
   * timed stretches, never between the samples of one.
   */
  pods(prefix: string, from: number, count: number): PodNetns[] {
    const made = Array.from({ length: count }, () => new PodNetns(prefix));
    ipBatch(
      made.flatMap((n) => [`netns add ${n.name}`, `link add ${n.hostIf} type veth peer name eth0 netns ${n.name}`]),
      true,
    );
    this.members.push(...made);
    made.forEach((n, k) => n.configure(from + k));
    return made;
  }

  /**
   * `count` bare namespaces (loopback only) made by one `ip` process: for churn and soak, whose
   * thousands of pods would otherwise spend minutes in `ip`. The rules meshcni programs do not
   * depend on the pod's interfaces, so the commit is the same.
   */
  bareNamespaces(prefix: string, count: number): string[] {
    const names = Array.from({ length: count }, () => `mcb-${prefix}-${process.pid}-${++nsCounter}`);
    ipBatch(
      names.map((n) => `netns add ${n}`),
      true,
    );
    this.bare.push(...names);
    return names.map((n) => `/var/run/netns/${n}`);
  }

  /** Deletes every namespace (and host-side veth) of the group, then waits for the kernel's teardown. */
  async settle(ms = 2000): Promise<void> {
    const lines = [
      ...this.members.map((n) => `netns del ${n.name}`),
      ...this.members.map((n) => `link del ${n.hostIf}`),
      ...this.bare.map((n) => `netns del ${n}`),
    ];
    this.members.length = 0;
    this.bare.length = 0;
    ipBatch(lines, false);
    if (lines.length > 0 && ms > 0) await new Promise((r) => setTimeout(r, ms));
  }
}

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
    execFileSync('ip', ['netns', 'add', this.name]);
    execFileSync('ip', ['link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.name]);
    return this.configure(index);
  }

  /** eth0 addressed (10.251.x.y/32 from the index) and up, lo up: one `ip` process in the netns. */
  configure(index: number): this {
    const a = 10 + (Math.floor(index / 250) % 200);
    const b = (index % 250) + 1;
    const lines = [`addr add 10.251.${a}.${b}/32 dev eth0`, 'link set eth0 up', 'link set lo up'];
    execFileSync('ip', ['-n', this.name, '-batch', '-'], {
      input: lines.join('\n') + '\n',
      stdio: ['pipe', 'ignore', 'pipe'],
    });
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

/** CPU time all CPUs spent busy (not idle, not waiting for I/O), in ms, from /proc/stat. */
export function systemBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = f as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return ((user + nice + system + irq + softirq + steal) * 1000) / 100; // USER_HZ is 100; idle and iowait left out
}

export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The built agent as a child process, standalone with a pods directory. */
export async function startAgent(
  dir: string,
  extra: Record<string, unknown> = {},
): Promise<{ child: ChildProcess; socketPath: string; log: () => string }> {
  const socketPath = join(dir, 'run', 'cni.sock');
  const cfg = join(dir, 'config.yaml');
  const conf = {
    podsDir: join(dir, 'pods'),
    socketPath,
    stateDir: join(dir, 'state'),
    metricsAddress: '',
    reconcileIntervalSeconds: 0,
    logLevel: 'warn',
    ...extra,
  };
  writeFileSync(
    cfg,
    Object.entries(conf)
      .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
      .join('\n') + '\n',
  );
  let log = '';
  // BENCH_AGENT_NODE_ARGS: extra Node flags for the agent, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, join(ROOT, 'dist/cli/main.js'), 'serve', '--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
export function shimAdd(
  socketPath: string,
  netns: string,
  pod: { namespace: string; name: string },
  containerId: string,
): { env: NodeJS.ProcessEnv; input: string } {
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
      prevResult: {
        cniVersion: '1.0.0',
        interfaces: [{ name: 'eth0', sandbox: netns }],
        ips: [{ address: '10.251.0.2/32', interface: 0 }],
      },
    }),
  };
}
