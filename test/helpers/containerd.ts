// A private node for runtime tests: a mount + network namespace in which the node's host paths
// (/etc/cni/net.d, /opt/cni/bin, /var/run/netns, …) are test-owned temp dirs, and a containerd of our
// own (config, root, state, socket in the temp dir) serving CRI in it. Nothing here touches the
// host's paths, network or containerd; stop() removes every process, mount and file it made.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CriClient } from './cri.js';

const PAUSE_C = fileURLToPath(new URL('./containerd-pause.c', import.meta.url));
export const UPSTREAM_CNI_DIR = '/usr/lib/cni';

/** Runs a command to completion; throws with its stderr when it fails. */
export function run(
  cmd: string,
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): string {
  const env = opts.env ? { ...process.env, ...opts.env } : undefined;
  const r = spawnSync(cmd, args, {
    input: opts.input,
    env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message || ''}`);
  return r.stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The node: a process holding a private mount and network namespace. Each host path given to
 * `remap` is, inside it, a bind mount of `<dir>/host<path>` (shared, so a HostToContainer or
 * Bidirectional mount of it sees what appears later). Paths that do not exist on the host are made
 * inside a tmpfs shadow of their nearest existing ancestor, so the host's tree is never written.
 */
export class NodeRoot {
  readonly dir = mkdtempSync(join(tmpdir(), `mcni-node-${process.pid}-`));
  private holder?: ChildProcess;
  private readonly remapped: string[] = [];

  get running(): boolean {
    return this.holder?.pid !== undefined && this.holder.exitCode === null && this.holder.signalCode === null;
  }

  get pid(): number {
    if (!this.holder?.pid) throw new Error('the node namespace holder is not running');
    return this.holder.pid;
  }

  async start(): Promise<void> {
    // unshare execs sleep: the holder's pid is the namespaces' anchor for nsenter.
    this.holder = spawn('unshare', ['--mount', '--net', '--propagation', 'private', 'sleep', 'infinity'], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100; i++) {
      const net = spawnSync('readlink', [`/proc/${this.holder.pid}/ns/net`], { encoding: 'utf8' }).stdout;
      if (net && net !== spawnSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' }).stdout) break;
      await sleep(20);
    }
    this.exec('ip', ['link', 'set', 'lo', 'up']);
  }

  /** The temp dir behind a host path. */
  hostDir(path: string): string {
    return join(this.dir, 'host', path);
  }

  /** Makes `path` (a directory) inside the node the temp dir hostDir(path). */
  remap(path: string): string {
    const backing = this.hostDir(path);
    mkdirSync(backing, { recursive: true });
    const script = [
      'set -eu',
      'p=$1; backing=$2; stash=$3',
      // The deepest ancestor that exists, symlinks resolved (/var/run → /run).
      'a=$p; while [ ! -e "$a" ]; do a=$(dirname "$a"); done; a=$(realpath "$a")',
      'real=$(realpath -m "$p")',
      'if [ ! -e "$real" ] && ! mountpoint -q "$stash"; then',
      // Shadow the ancestor with a tmpfs holding bind mounts of all its entries, then make the path.
      '  mkdir -p "$stash"; mount --rbind "$a" "$stash"; mount -t tmpfs -o mode=0755 meshcni-shadow "$a"',
      '  for e in "$stash"/* "$stash"/.[!.]*; do',
      '    [ -e "$e" ] || [ -L "$e" ] || continue; n="$a/${e##*/}"',
      '    if [ -L "$e" ]; then cp -P "$e" "$n"',
      '    elif [ -d "$e" ]; then mkdir -p "$n"; mount --rbind "$e" "$n"',
      '    else : > "$n"; mount --bind "$e" "$n"; fi',
      '  done',
      'fi',
      'mkdir -p "$real"; mount --bind "$backing" "$real"',
    ].join('\n');
    const real = run('realpath', ['-m', path]).trim();
    let ancestor = real;
    while (!existsSync(ancestor)) ancestor = dirname(ancestor);
    const stash = join(this.dir, 'shadow', ancestor.replaceAll('/', '_'));
    this.exec('sh', ['-c', script, 'remap', real, backing, stash]);
    this.remapped.push(real);
    // Shared after every remap: a later shadow of an ancestor re-binds earlier ones.
    for (const r of this.remapped) this.exec('mount', ['--make-rshared', r]);
    return backing;
  }

  /** Runs a command inside the node's mount and network namespaces. */
  exec(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
    return run('nsenter', ['-t', String(this.pid), '-m', '-n', '--', cmd, ...args], opts);
  }

  /** Starts a long-running process inside the node. */
  spawn(cmd: string, args: string[]): ChildProcess {
    return spawn('nsenter', ['-t', String(this.pid), '-m', '-n', '--', cmd, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /** Ends the namespaces (their mounts go with them) and removes the temp dir. Call after stopping
   * everything started inside. */
  async stop(): Promise<void> {
    const h = this.holder;
    if (h && h.exitCode === null && h.signalCode === null) {
      const gone = new Promise((r) => h.once('exit', r));
      h.kill('SIGKILL');
      await gone;
    }
    this.holder = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A bridge + host-local primary network, the way a node's first CNI config looks before meshcni. */
export function primaryConfList(bridge: string, subnet: string, ipamDataDir: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'meshcni-test-primary',
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: false,
          ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: ipamDataDir },
        },
      ],
    },
    null,
    2,
  );
}

/** Copies the upstream plug-ins a containerd sandbox needs (loopback for lo) into a CNI bin dir. */
export function installUpstreamPlugins(binDir: string, names = ['bridge', 'host-local', 'loopback']): void {
  mkdirSync(binDir, { recursive: true });
  for (const n of names) copyFileSync(join(UPSTREAM_CNI_DIR, n), join(binDir, n));
}

/**
 * The sandbox image: a static pause program in an image of its own, built with podman and cached
 * there by a hash of its source, saved as a docker-archive containerd can import. No registry.
 */
export function pauseImageArchive(workDir: string): { ref: string; archive: string } {
  const hash = run('sha256sum', [PAUSE_C]).slice(0, 12);
  const ref = `localhost/meshcni-test-pause:${hash}`;
  const ctx = join(workDir, 'pause-image');
  mkdirSync(ctx, { recursive: true });
  if (spawnSync('podman', ['image', 'exists', ref]).status !== 0) {
    run('cc', ['-Os', '-static', '-s', '-Wall', '-Wextra', '-Werror', '-o', join(ctx, 'pause'), PAUSE_C]);
    writeFileSync(join(ctx, 'Containerfile'), 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n');
    run('podman', ['build', '--network', 'none', '-t', ref, ctx]);
  }
  const archive = join(ctx, 'pause.tar');
  run('podman', ['save', '--format', 'docker-archive', '-o', archive, ref]);
  return { ref, archive };
}

export interface ContainerdOptions {
  cniConfDir: string;
  cniBinDir: string;
  /** Several instances in one node need different names (their dir under the node's). */
  name?: string;
  /** 'native' (default: copies each image per container) or 'overlayfs' (what a real node uses). */
  snapshotter?: 'native' | 'overlayfs';
}

/** Our own containerd inside a NodeRoot: CRI with runc, the native snapshotter unless told otherwise, the pause
 * image imported. */
export class Containerd {
  readonly dir: string;
  readonly socket: string;
  /** Sandboxes' cgroup parent (cgroupfs): unique to this instance, removed by stop(). */
  readonly cgroupParent: string;
  private proc?: ChildProcess;
  log = '';
  cri?: CriClient;
  /** The sandbox image's ref once start() imported it (also a container image: it runs forever). */
  pauseImage = '';

  constructor(
    private readonly node: NodeRoot,
    private readonly opts: ContainerdOptions,
  ) {
    this.dir = join(node.dir, opts.name ?? 'containerd');
    this.socket = join(this.dir, 'containerd.sock');
    this.cgroupParent = `/meshcni-test-${process.pid}-${++Containerd.count}`;
  }

  private static count = 0;

  private get snapshotter(): string {
    return this.opts.snapshotter ?? 'native';
  }

  private config(sandboxImage: string): string {
    const d = this.dir;
    // restrict_oom_score_adj: the runtime may not lower oom_score_adj below its own on this host.
    return `version = 2
root = "${d}/root"
state = "${d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "${this.socket}"
[ttrpc]
  address = "${this.socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${sandboxImage}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${this.snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${this.opts.cniBinDir}"
    conf_dir = "${this.opts.cniConfDir}"
    max_conf_num = 1
`;
  }

  async start(): Promise<CriClient> {
    mkdirSync(this.dir, { recursive: true });
    const pause = pauseImageArchive(this.dir);
    const cfg = join(this.dir, 'config.toml');
    writeFileSync(cfg, this.config(pause.ref));
    const p = this.node.spawn('containerd', ['--config', cfg]);
    this.proc = p;
    p.stdout!.on('data', (c: Buffer) => (this.log += c.toString()));
    p.stderr!.on('data', (c: Buffer) => (this.log += c.toString()));
    const cri = new CriClient(this.socket, 10_000);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`containerd exited (${p.exitCode}):\n${this.log.slice(-4000)}`);
      if (
        existsSync(this.socket) &&
        (await cri.version().then(
          () => true,
          () => false,
        ))
      )
        break;
      if (Date.now() > deadline)
        throw new Error(`containerd did not serve CRI on ${this.socket}:\n${this.log.slice(-4000)}`);
      await sleep(200);
    }
    cri.close();
    this.importArchive(pause.archive);
    this.pauseImage = pause.ref;
    this.cri = new CriClient(this.socket, 60_000, this.cgroupParent);
    return this.cri;
  }

  /** Imports a docker-archive into the CRI's image store (unpacked for this instance's snapshotter). */
  importArchive(archive: string): void {
    run('ctr', [
      '--address',
      this.socket,
      '--namespace',
      'k8s.io',
      'images',
      'import',
      '--snapshotter',
      this.snapshotter,
      archive,
    ]);
  }

  /** Copies a podman image into this containerd (saved to a docker-archive under its dir, imported). */
  importPodmanImage(ref: string): void {
    const archive = join(this.dir, `image-${ref.replace(/[^A-Za-z0-9.-]/g, '_')}.tar`);
    run('podman', ['save', '--format', 'docker-archive', '-o', archive, ref]);
    this.importArchive(archive);
  }

  /** Stops containerd, then kills and reaps any sandbox it left (shims, pause processes). */
  async stop(): Promise<void> {
    this.cri?.close();
    this.cri = undefined;
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
    this.proc = undefined;
    // Shims outlive containerd by design; ours are the ones whose address names our socket. Their
    // children (pause processes) first, then the shims.
    const ps = spawnSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' }).stdout;
    const procs = ps.split('\n').flatMap((l) => {
      const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l);
      return m ? [{ pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! }] : [];
    });
    const shims = new Set(
      procs.filter((p) => p.args.includes('containerd-shim') && p.args.includes(this.socket)).map((p) => p.pid),
    );
    const kill = (pid: number): void => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    for (const p of procs) if (shims.has(p.ppid)) kill(p.pid);
    for (const pid of shims) kill(pid);
    // runc removes each sandbox's cgroup, not the parents (`<parent>/pod<uid>`) it made in every hierarchy.
    const hierarchies = readdirSync('/sys/fs/cgroup').map((h) => join('/sys/fs/cgroup', h));
    for (const h of ['/sys/fs/cgroup', ...hierarchies]) {
      const d = join(h, this.cgroupParent);
      if (!existsSync(d)) continue;
      for (const pod of readdirSync(d).filter((f) => f.startsWith('pod'))) spawnSync('rmdir', [join(d, pod)]);
      spawnSync('rmdir', [d]);
    }
    // Unmount whatever the snapshotter and the shims left under our root before the dir goes.
    if (this.node.running)
      spawnSync('sh', [
        '-c',
        `grep -o " ${this.dir}/[^ ]*" /proc/${this.node.pid}/mounts | sort -r | while read m; do nsenter -t ${this.node.pid} -m umount -l "$m"; done`,
      ]);
  }
}
