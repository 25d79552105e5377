// Finding a running pod's network namespace without the runtime: a process of the pod lives in a
// cgroup whose path names the pod uid — `pod<uid>` (cgroupfs driver) or `pod<uid with _>` inside
// a `.slice` (systemd driver). Its /proc/<pid>/ns/net is the pod's netns. The host's own netns is
// refused: a hostNetwork pod (or a stray match) must never get redirect rules.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export type NetnsLookup = { netns: string; pid: number } | { problem: string };

const UID = /^[A-Za-z0-9-]{1,64}$/;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Matches a cgroup path segment naming the pod: `pod<uid>`, `…-pod<uid_>.slice`. */
export function podCgroupPattern(uid: string): RegExp {
  const forms = [uid, uid.replace(/-/g, '_')].map(escapeRe).join('|');
  return new RegExp(`(?:^|[/-])pod(?:${forms})(?:\\.slice)?(?:/|$)`);
}

const inode = (path: string): string | null => {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
};

/**
 * Scans procRoot once for the pods asked for; for each uid, the first process found in its
 * cgroup whose netns is not the host's. Processes that exit mid-scan are skipped.
 */
export function findPodNetns(uids: readonly string[], procRoot = '/proc'): Map<string, NetnsLookup> {
  const out = new Map<string, NetnsLookup>();
  const wanted = uids.filter((u) => {
    if (UID.test(u)) return true;
    out.set(u, { problem: `pod uid ${JSON.stringify(u)} is not a Kubernetes uid` });
    return false;
  });
  if (wanted.length === 0) return out;
  const patterns = wanted.map((u) => [u, podCgroupPattern(u)] as const);
  const host = new Set([inode(join(procRoot, '1/ns/net')), inode(join(procRoot, 'self/ns/net'))].filter((x): x is string => x !== null));
  let pids: string[];
  try {
    pids = readdirSync(procRoot).filter((d) => /^\d+$/.test(d));
  } catch (e) {
    for (const u of wanted) out.set(u, { problem: `cannot list ${procRoot}: ${(e as Error).message}` });
    return out;
  }
  for (const pid of pids) {
    if (patterns.every(([u]) => out.get(u) && 'netns' in out.get(u)!)) break;
    let cgroups: string;
    try {
      cgroups = readFileSync(join(procRoot, pid, 'cgroup'), 'utf8');
    } catch {
      continue; // exited
    }
    for (const [uid, re] of patterns) {
      if (out.has(uid) && 'netns' in out.get(uid)!) continue;
      if (!cgroups.split('\n').some((line) => re.test(line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1)))) continue;
      const netns = join(procRoot, pid, 'ns/net');
      const id = inode(netns);
      if (id === null) continue; // exited between the two reads
      if (host.has(id)) out.set(uid, { problem: `process ${pid} of pod uid ${uid} is in the host network namespace; refusing to program it` });
      else out.set(uid, { netns, pid: Number(pid) });
    }
  }
  for (const u of wanted) if (!out.has(u)) out.set(u, { problem: `no process in a cgroup of pod uid ${u} under ${procRoot}` });
  return out;
}
