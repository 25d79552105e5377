// CNI STATUS the way libcni (containernetworking/cni, GetStatusNetworkList; CNI spec 1.1) runs it for
// a conflist, which is what containerd ≥ 2.0.1 and CRI-O do every few seconds: nothing at all below
// cniVersion 1.1.0; otherwise each plug-in in order, exec'd with CNI_COMMAND=STATUS, the other CNI_*
// variables empty, and its entry (with the list's name and cniVersion) on stdin — stopping at the
// first plug-in that fails.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface StatusOutcome {
  ok: boolean;
  /** The plug-in types exec'd, in order. */
  execed: string[];
  /** The failing plug-in's CNI error, when not ok. */
  failed?: { type: string; code: number; msg: string };
  stderr: string;
}

const atLeast110 = (v: string): boolean => {
  const [a = 0, b = 0] = v.split('.').map(Number);
  return a > 1 || (a === 1 && b >= 1);
};

export function libcniStatus(
  conflist: { cniVersion: string; name: string; plugins: Record<string, unknown>[] },
  cniPath: string[],
): StatusOutcome {
  const out: StatusOutcome = { ok: true, execed: [], stderr: '' };
  if (!atLeast110(conflist.cniVersion)) return out;
  for (const plugin of conflist.plugins) {
    const type = String(plugin.type);
    const bin = cniPath.map((d) => join(d, type)).find((p) => existsSync(p));
    if (!bin)
      return {
        ...out,
        ok: false,
        failed: { type, code: 0, msg: `failed to find plugin "${type}" in path ${cniPath.join(':')}` },
      };
    out.execed.push(type);
    const env = {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: 'STATUS',
      CNI_CONTAINERID: '',
      CNI_NETNS: '',
      CNI_IFNAME: '',
      CNI_ARGS: '',
      CNI_PATH: cniPath.join(':'),
    };
    const r = spawnSync(bin, [], {
      input: JSON.stringify({ ...plugin, name: conflist.name, cniVersion: conflist.cniVersion }),
      env,
      encoding: 'utf8',
      timeout: 10_000,
    });
    out.stderr += r.stderr;
    if (r.status !== 0) {
      let err: { code?: number; msg?: string } = {};
      try {
        err = JSON.parse(r.stdout) as typeof err;
      } catch {
        err = { msg: `exit ${r.status}, stdout ${JSON.stringify(r.stdout)}` };
      }
      return { ...out, ok: false, failed: { type, code: err.code ?? 0, msg: err.msg ?? '' } };
    }
  }
  return out;
}
