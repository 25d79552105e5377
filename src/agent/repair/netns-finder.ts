// Finding a running pod's network namespace without the runtime: a process of the pod lives in a
// cgroup whose path names the pod uid — `pod<uid>` (cgroupfs driver) or `pod<uid with _>` inside
// a `.slice` (systemd driver). A cgroup path proves nothing (a non-root user with a delegated
// cgroup can name one so), so every candidate's netns is opened once, held by that fd, and proven
// to be the pod's before it is returned: not the host's, owned by the agent's own (the initial)
// user namespace, and — when the API gives the pod's IPs — holding one of them. The caller programs
// the held fd (`/proc/self/fd/<n>`), never a `/proc/<pid>` path a reused pid could point elsewhere.
import { closeSync, constants, openSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { netnsIdentity, netnsOwner } from '../../kernel/index.js';

/** A proven netns, held open: `netns` (`/proc/self/fd/<fd>`) names it until `fd` is closed. */
export interface HeldNetns {
  netns: string;
  fd: number;
  /** `dev:ino` of the namespace: what a record keeps instead of a path. */
  id: string;
  pid: number;
}
export type NetnsLookup = HeldNetns | { problem: string };

/** One pod to look for: its uid and the IPs the API reports for it (empty: not known yet). */
export interface PodNetnsQuery {
  uid: string;
  ips?: readonly string[];
}

const UID = /^[A-Za-z0-9-]{1,64}$/;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Matches a cgroup path segment naming the pod: `pod<uid>`, `…-pod<uid_>.slice`. */
export function podCgroupPattern(uid: string): RegExp {
  const forms = [uid, uid.replace(/-/g, '_')].map(escapeRe).join('|');
  return new RegExp(`(?:^|[/-])pod(?:${forms})(?:\\.slice)?(?:/|$)`);
}

const idOf = (x: { dev: bigint; ino: bigint }): string => `${x.dev}:${x.ino}`;

function statId(path: string): string | null {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/** Closes a lookup's fd, if it holds one. */
export function releaseNetns(found: NetnsLookup | undefined): void {
  if (found && 'fd' in found) closeSync(found.fd);
}

/** The local addresses of the netns `pid` is in, from its /proc/<pid>/net files (IPv4 and IPv6). */
function localAddresses(procRoot: string, pid: string): Set<string> {
  const out = new Set<string>();
  try {
    // fib_trie lists each local address as a leaf followed by `/32 host LOCAL`.
    const lines = readFileSync(join(procRoot, pid, 'net/fib_trie'), 'utf8').split('\n');
    for (let i = 1; i < lines.length; i++) {
      if (!/\/32 host LOCAL/.test(lines[i]!)) continue;
      const m = /([0-9.]+)\s*$/.exec(lines[i - 1]!);
      if (m) out.add(m[1]!);
    }
  } catch {
    // no IPv4 in this netns
  }
  try {
    for (const line of readFileSync(join(procRoot, pid, 'net/if_inet6'), 'utf8').split('\n')) {
      const hex = line.split(/\s+/)[0];
      if (hex?.length === 32) out.add(normaliseIp(hex.match(/.{4}/g)!.join(':')));
    }
  } catch {
    // no IPv6 in this netns
  }
  return out;
}

function normaliseIp(ip: string): string {
  if (!ip.includes(':')) return ip;
  let parts = ip.split('::');
  const head = parts[0] ? parts[0].split(':') : [];
  const tail = parts.length > 1 && parts[1] ? parts[1].split(':') : [];
  const fill = parts.length > 1 ? Array(8 - head.length - tail.length).fill('0') : [];
  parts = [...head, ...fill, ...tail];
  return parts.map((p) => parseInt(p, 16).toString(16)).join(':');
}

interface NodeIds {
  /** The agent's own user namespace: the one that owns every pod netns the runtime made. */
  userns: string;
  hostNetns: Set<string>;
}

/**
 * Opens and proves one candidate process's netns. Returns the held netns, or why it is refused;
 * `null` when the process exited meanwhile (not a refusal).
 */
function proveCandidate(procRoot: string, pid: string, q: PodNetnsQuery, node: NodeIds): NetnsLookup | null {
  const path = join(procRoot, pid, 'ns/net');
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  const held = `/proc/self/fd/${fd}`;
  const refuse = (why: string): NetnsLookup => {
    closeSync(fd);
    return { problem: `process ${pid} in a cgroup of pod uid ${q.uid}: ${why}` };
  };
  let id: string;
  let owner: string;
  try {
    id = idOf(netnsIdentity(held));
    owner = idOf(netnsOwner(held));
  } catch (e) {
    return refuse(`cannot check its netns: ${(e as Error).message}`);
  }
  if (node.hostNetns.has(id)) return refuse('it is in the host network namespace; refusing to program it');
  if (owner !== node.userns) {
    return refuse(
      `its netns ${id} is owned by user namespace ${owner}, not the node's (${node.userns}); refusing to program it`,
    );
  }
  if (q.ips && q.ips.length > 0) {
    const local = localAddresses(procRoot, pid);
    // Re-read after: if the pid died and was reused meanwhile, the addresses were some other netns's.
    if (statId(path) !== id) return refuse('it left its netns while being checked');
    const want = q.ips.map(normaliseIp);
    if (!want.some((ip) => local.has(ip))) {
      return refuse(`its netns ${id} holds none of the pod's IPs ${want.join(', ')}; refusing to program it`);
    }
  }
  return { netns: held, fd, id, pid: Number(pid) };
}

/**
 * Scans procRoot once for the pods asked for. For each uid, every process in its cgroup is a
 * candidate and each candidate's netns is proven (see the file comment); refused candidates are
 * skipped, so a planted process that sorts first cannot win. The pod is found only if the proven
 * candidates all hold one and the same netns. Every returned HeldNetns must be released.
 */
export function findPodNetns(queries: readonly PodNetnsQuery[], procRoot = '/proc'): Map<string, NetnsLookup> {
  const out = new Map<string, NetnsLookup>();
  const wanted = queries.filter((q) => {
    if (UID.test(q.uid)) return true;
    out.set(q.uid, { problem: `pod uid ${JSON.stringify(q.uid)} is not a Kubernetes uid` });
    return false;
  });
  if (wanted.length === 0) return out;
  const userns = statId('/proc/self/ns/user');
  const hostNetns = new Set(
    [statId('/proc/self/ns/net'), statId(join(procRoot, '1/ns/net'))].filter((x): x is string => x !== null),
  );
  let pids: string[];
  try {
    if (userns === null) throw new Error('cannot stat /proc/self/ns/user');
    pids = readdirSync(procRoot).filter((d) => /^\d+$/.test(d));
  } catch (e) {
    for (const q of wanted) out.set(q.uid, { problem: `cannot list ${procRoot}: ${(e as Error).message}` });
    return out;
  }
  const patterns = wanted.map((q) => [q, podCgroupPattern(q.uid)] as const);
  const proven = new Map<string, HeldNetns[]>();
  const refused = new Map<string, string[]>();
  for (const pid of pids) {
    let cgroups: string;
    try {
      cgroups = readFileSync(join(procRoot, pid, 'cgroup'), 'utf8');
    } catch {
      continue; // exited
    }
    const paths = cgroups.split('\n').map((line) => line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1));
    for (const [q, re] of patterns) {
      if (!paths.some((p) => re.test(p))) continue;
      const r = proveCandidate(procRoot, pid, q, { userns: userns!, hostNetns });
      if (r === null) continue;
      if ('problem' in r) refused.set(q.uid, [...(refused.get(q.uid) ?? []), r.problem]);
      else proven.set(q.uid, [...(proven.get(q.uid) ?? []), r]);
    }
  }
  for (const q of wanted) {
    const ok = proven.get(q.uid) ?? [];
    const ids = new Set(ok.map((h) => h.id));
    const [first, ...rest] = ok;
    for (const h of rest) closeSync(h.fd);
    if (first && ids.size === 1) {
      out.set(q.uid, first);
      continue;
    }
    if (first) closeSync(first.fd);
    const why = refused.get(q.uid) ?? [];
    if (ids.size > 1)
      out.set(q.uid, {
        problem: `processes of pod uid ${q.uid} are in ${ids.size} different netns (${[...ids].join(', ')}); refusing to guess`,
      });
    else if (why.length > 0) out.set(q.uid, { problem: why.join('; ') });
    else out.set(q.uid, { problem: `no process in a cgroup of pod uid ${q.uid} under ${procRoot}` });
  }
  return out;
}
