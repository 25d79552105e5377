// A minimal container runtime's CNI executor (libcni's chaining rules): runs a conflist's plug-ins
// in order for ADD/CHECK and in reverse for DEL, feeding each the previous result. Used by the
// demo, the end-to-end tests and the benchmarks to drive the shim exactly as a runtime does.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export interface ConfList {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
}

export interface CniInvocation {
  command: 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS, e.g. `K8S_POD_NAMESPACE=default;K8S_POD_NAME=web`. */
  args: string;
  /** Directories searched for plug-in binaries (CNI_PATH). */
  path: string[];
}

export interface PluginRun {
  plugin: string;
  code: number;
  stdout: string;
  stderr: string;
}

export class CniPluginError extends Error {
  constructor(
    readonly run: PluginRun,
    readonly cniError: { code?: number; msg?: string; details?: string } | null,
  ) {
    super(
      `CNI plug-in ${run.plugin} failed (exit ${run.code}): ${cniError?.msg ?? run.stdout.trim() ?? run.stderr.trim()}${cniError?.code !== undefined ? ` [code ${cniError.code}]` : ''}`,
    );
    this.name = 'CniPluginError';
  }
}

/** Executes one plug-in binary with the CNI environment and a config on stdin. */
export function execPlugin(binary: string, inv: CniInvocation, stdin: string, timeoutMs = 30_000): Promise<PluginRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [], {
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: inv.command,
        CNI_CONTAINERID: inv.containerId,
        CNI_NETNS: inv.netns,
        CNI_IFNAME: inv.ifName,
        CNI_ARGS: inv.args,
        CNI_PATH: inv.path.join(':'),
      },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        plugin: binary,
        code: code ?? -1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      }),
    );
    child.stdin.end(stdin);
  });
}

function findPlugin(type: string, path: string[]): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(type)) throw new Error(`plug-in type '${type}' is not a valid binary name`);
  // The first directory is authoritative here; callers list the shim's directory first.
  return join(path[0] ?? '/opt/cni/bin', type);
}

const parseJson = (s: string): Record<string, unknown> | null => {
  try {
    return JSON.parse(s) as Record<string, unknown>;
  } catch {
    return null;
  }
};

/**
 * Runs a whole conflist for ADD, CHECK or DEL. Returns the final result (ADD) or null.
 * `locate` maps a plug-in type to its binary (default: CNI_PATH[0]/type). CHECK and DEL get the
 * cached ADD result as prevResult, as libcni does.
 */
export async function runConfList(
  conf: ConfList,
  inv: CniInvocation,
  locate: (type: string) => string = (t) => findPlugin(t, inv.path),
  cachedResult: Record<string, unknown> | null = null,
): Promise<Record<string, unknown> | null> {
  const plugins = inv.command === 'DEL' ? [...conf.plugins].reverse() : conf.plugins;
  let prev: Record<string, unknown> | null = inv.command === 'ADD' ? null : cachedResult;
  for (const p of plugins) {
    const netconf: Record<string, unknown> = { ...p, cniVersion: conf.cniVersion, name: conf.name };
    if (prev) netconf.prevResult = prev;
    const run = await execPlugin(locate(String(p.type)), inv, JSON.stringify(netconf));
    if (run.code !== 0) {
      const e = new CniPluginError(run, parseJson(run.stdout));
      if (inv.command === 'DEL') continue; // teardown goes on through every plug-in, like libcni's best effort
      throw e;
    }
    if (inv.command === 'ADD') {
      const r = parseJson(run.stdout);
      if (!r) throw new CniPluginError(run, { msg: `plug-in ${String(p.type)} printed no JSON result` });
      prev = r;
    }
  }
  return prev;
}
