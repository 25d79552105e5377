// Test fixtures for real network namespaces: unique names, command helpers, guaranteed cleanup.
import { execFileSync, spawnSync } from 'node:child_process';

let counter = 0;

/** A netns name unique to this test process, so parallel test files never collide. */
export function uniqueNetnsName(prefix = 't'): string {
  counter += 1;
  return `mcni-${prefix}-${process.pid}-${counter}`;
}

export function netnsPath(name: string): string {
  return `/var/run/netns/${name}`;
}

/** Creates a netns with `lo` up; returns its name. Remember it with a TestNetns to clean up. */
export function addNetns(name: string): string {
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

export function delNetns(name: string): void {
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
}

/** Runs a command inside the netns and returns stdout; throws with stderr on failure. */
export function inNetns(name: string, cmd: string, args: string[], input?: string): string {
  const r = spawnSync('ip', ['netns', 'exec', name, cmd, ...args], {
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} in netns ${name} failed (${r.status}): ${r.stderr}`);
  }
  return r.stdout;
}

/** Tracks the namespaces a test file made so afterEach/afterAll can remove them all. */
export class NetnsPool {
  private readonly names = new Set<string>();

  constructor(private readonly prefix: string) {}

  create(): string {
    const name = addNetns(uniqueNetnsName(this.prefix));
    this.names.add(name);
    return name;
  }

  cleanup(): void {
    for (const name of this.names) delNetns(name);
    this.names.clear();
  }
}

/** Normalises `iptables-save` output for comparison: drops comment lines (timestamps). */
export function normaliseSave(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('#'))
    .join('\n');
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Everything `nft -j list ruleset` says about a namespace, rule and object handles stripped. */
export function nftJson(ns: string): unknown {
  const j = JSON.parse(inNetns(ns, 'nft', ['-j', 'list', 'ruleset'])) as {
    nftables: Record<string, Record<string, unknown>>[];
  };
  return j.nftables
    .filter((o) => !('metainfo' in o))
    .map((o) => {
      const [kind, body] = Object.entries(o)[0]!;
      const { handle: _h, ...rest } = body;
      return { [kind]: rest };
    });
}

/** The kernel's bytecode of every rule and set (`nft --debug=netlink list ruleset`), handles stripped. */
export function nftBytecode(ns: string): string {
  return inNetns(ns, 'nft', ['--debug=netlink', 'list', 'ruleset']).replace(
    /^(inet|ip6?) (\S+) (\S+)( \d+)+$/gm,
    '$1 $2 $3',
  );
}
