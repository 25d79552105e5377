// A running pod as the kernel sees it, without a container runtime: a netns, a process living in it,
// and a cgroup directory whose path names the pod uid (cgroupfs `pod<uid>` or systemd
// `…-pod<uid_>.slice` form). Everything is removed by remove(), even after a partial create.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addNetns, delNetns, uniqueNetnsName } from '../helpers/netns.js';
import { podManifest, type PodSpec } from './helpers.js';

/** A cgroup hierarchy we may make directories in: v2 at the root, v2 "unified" or v1 pids. */
export function cgroupRoot(): string {
  for (const dir of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified', '/sys/fs/cgroup/pids']) {
    if (existsSync(join(dir, 'cgroup.procs'))) return dir;
  }
  throw new Error('no writable cgroup hierarchy under /sys/fs/cgroup');
}

let count = 0;

export class PodProcess {
  readonly netns: string;
  readonly dirs: string[] = [];
  private child?: ChildProcess;

  constructor(
    readonly uid: string,
    readonly driver: 'cgroupfs' | 'systemd' = 'cgroupfs',
  ) {
    this.netns = uniqueNetnsName('pod');
  }

  /** Creates the netns, the cgroup dirs and the process, and moves the process into the cgroup. */
  async start(): Promise<number> {
    addNetns(this.netns);
    const top = join(cgroupRoot(), `mcni-test-${process.pid}-${++count}${this.driver === 'systemd' ? '.slice' : ''}`);
    const leaf =
      this.driver === 'systemd'
        ? join(top, `kubepods-besteffort-pod${this.uid.replace(/-/g, '_')}.slice`)
        : join(top, `pod${this.uid}`);
    for (const d of [top, leaf]) {
      mkdirSync(d);
      this.dirs.unshift(d);
    }
    const child = spawn('ip', ['netns', 'exec', this.netns, 'sleep', '600'], { stdio: 'ignore' });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    // `ip netns exec` execs sleep in the same pid once it has entered the netns: wait for that.
    const deadline = Date.now() + 5000;
    while (
      spawnSync('readlink', [`/proc/${child.pid}/exe`], { encoding: 'utf8' })
        .stdout.trim()
        .endsWith('/ip')
    ) {
      if (Date.now() > deadline) throw new Error('pod process did not enter its netns');
      await new Promise((r) => setTimeout(r, 10));
    }
    writeFileSync(join(leaf, 'cgroup.procs'), String(child.pid));
    return child.pid!;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The pod dies: its process exits and its netns (unnamed now) goes with it. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    delNetns(this.netns);
  }

  async remove(): Promise<void> {
    await this.kill().catch(() => undefined);
    delNetns(this.netns);
    for (const d of this.dirs.splice(0)) {
      try {
        rmdirSync(d);
      } catch {
        /* already gone */
      }
    }
  }
}

/** A pod manifest (helpers' podManifest) with metadata.uid, written into the world's pods dir. */
export function addPodWithUid(podsDir: string, p: PodSpec, uid: string): void {
  writeFileSync(
    join(podsDir, `${p.namespace}-${p.name}.yaml`),
    podManifest(p).replace(/^( {2}name: .*\n)/m, `$1  uid: ${uid}\n`),
  );
}
