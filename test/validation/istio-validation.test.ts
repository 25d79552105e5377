// Istio's istio-validation init container (tools/istio-iptables/pkg/validation, 1.30.3), re-implemented
// and run in namespaces meshcni captured: as the proxy's uid and gid it listens on 15001 and 15006 on
// loopback, dials 127.0.0.6:15002 (::6 for IPv6) from 127.0.0.1 (::1) once a second, and passes only
// if a listener accepts a connection whose SO_ORIGINAL_DST port is 15002 — within the probe timeout
// (5 s), else it exits 126 and the pod never starts. Both layouts, REDIRECT and TPROXY, IPv4 and dual
// stack, classic and native-sidecar pods, Istio 1.17.8's and 1.30.3's rules, a custom proxy uid; and it must fail where meshcni did not
// program. Root.
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import { applyRouting, applyTables } from '../../src/nft/apply.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';

/** The validator: argv family (4|6), uid, gid, timeout seconds. Exit 0 passed, 126 failed (Istio's code). */
const VALIDATOR = String.raw`
import os, socket, struct, sys, threading, time
fam6 = sys.argv[1] == '6'
uid, gid, timeout = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
os.setgroups([]); os.setgid(gid); os.setuid(uid)
listen_ip, server_ip = ('::1', '::6') if fam6 else ('127.0.0.1', '127.0.0.6')
PROBE_PORT, SO_ORIGINAL_DST = 15002, 80
def original_port(c):
    if fam6: raw = c.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)  # struct sockaddr_in6
    else: raw = c.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)           # struct sockaddr_in
    return struct.unpack('!H', raw[2:4])[0]
def serve(l):
    while True:
        c, _ = l.accept()
        try: port = original_port(c)
        except OSError as e:
            print('no original dst: %s' % e, flush=True); c.close(); continue
        c.sendall(str(port).encode()); c.close()
        if port == PROBE_PORT:
            print('validation passed', flush=True); os._exit(0)
listeners = 0
for port in (15001, 15006):
    try:
        l = socket.socket(socket.AF_INET6 if fam6 else socket.AF_INET, socket.SOCK_STREAM)
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        l.bind((listen_ip, port)); l.listen(16)
    except OSError as e:
        print('cannot listen on %s:%d: %s' % (listen_ip, port, e), flush=True); continue
    listeners += 1
    threading.Thread(target=serve, args=(l,), daemon=True).start()
if not listeners: print('no listener available', flush=True); os._exit(126)
def client():
    while True:
        try:
            s = socket.socket(socket.AF_INET6 if fam6 else socket.AF_INET, socket.SOCK_STREAM)
            s.bind((listen_ip, 0)); s.connect((server_ip, PROBE_PORT)); s.close()
        except OSError as e: print('dial %s:%d: %s' % (server_ip, PROBE_PORT, e), flush=True)
        time.sleep(1)
threading.Thread(target=client, daemon=True).start()
time.sleep(timeout)
print('validation timeout', flush=True); os._exit(126)
`;

const pool = new NetnsPool('ival');
afterEach(() => pool.cleanup());

/** Runs the validator in `ns` as uid/gid; its exit code and output. */
function validate(ns: string, family: 4 | 6, uid: number, gid: number): { code: number | null; out: string } {
  const r = spawnSync(
    'ip',
    ['netns', 'exec', ns, '/usr/bin/python3', '-c', VALIDATOR, String(family), String(uid), String(gid), '5'],
    {
      encoding: 'utf8',
      timeout: 15_000,
    },
  );
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

type Shape = 'classic' | 'native';
interface Case {
  layout: 'iptables' | 'nft';
  mode: 'REDIRECT' | 'TPROXY';
  dual: boolean;
  shape: Shape;
  rules: '1.17' | '1.30';
  uid?: number;
  gid?: number;
}

function podFor(c: Case): Record<string, unknown> {
  const proxy = {
    name: 'istio-proxy',
    image: 'docker.io/istio/proxyv2:1.30.3',
    args: ['proxy', 'sidecar'],
    securityContext: { runAsUser: c.uid ?? 1337, runAsGroup: c.gid ?? 1337 },
    env: c.dual ? [{ name: 'ISTIO_DUAL_STACK', value: 'true' }] : [],
  };
  const validation = { name: 'istio-validation', image: 'docker.io/istio/proxyv2:1.30.3' };
  const app = { name: 'app', image: 'example/app' };
  const spec =
    c.shape === 'native'
      ? { initContainers: [validation, { ...proxy, restartPolicy: 'Always' }], containers: [app] }
      : { initContainers: [validation], containers: [app, proxy] };
  const annotations: Record<string, string> = { 'sidecar.istio.io/status': '{}' };
  if (c.mode === 'TPROXY') annotations['sidecar.istio.io/interceptionMode'] = 'TPROXY';
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'v', namespace: 'shop', uid: 'u-val', annotations }, spec };
}

/** A fresh namespace (lo up, as the loopback plug-in leaves it) programmed as meshcni programs a pod. */
async function captured(c: Case): Promise<string> {
  const plan = planRules(podFor(c), parseCaptureConfig({ layout: c.layout, istioVersion: c.rules }));
  if (!plan.capture) throw new Error(`expected capture: ${plan.reason}`);
  const ns = pool.create();
  inNetns(ns, 'ip', ['link', 'set', 'lo', 'up']);
  if (plan.routing) await applyRouting(netnsPath(ns), plan.routing);
  await applyTables(netnsPath(ns), plan.tables);
  return ns;
}

const CASES: Case[] = [];
for (const rules of ['1.17', '1.30'] as const)
  for (const layout of ['iptables', 'nft'] as const)
    for (const mode of ['REDIRECT', 'TPROXY'] as const)
      for (const dual of [false, true])
        for (const shape of ['classic', 'native'] as const) CASES.push({ layout, mode, dual, shape, rules });
CASES.push({ layout: 'iptables', mode: 'REDIRECT', dual: true, shape: 'native', rules: '1.30', uid: 2001, gid: 2002 });
CASES.push({ layout: 'nft', mode: 'TPROXY', dual: false, shape: 'classic', rules: '1.17', uid: 2001, gid: 2002 });

const label = (c: Case): string =>
  `Istio ${c.rules} rules, ${c.layout} layout, ${c.mode}, ${c.dual ? 'dual stack' : 'IPv4'}, ${c.shape === 'native' ? 'native sidecar' : 'classic pod'}${c.uid ? `, proxy ${c.uid}:${c.gid}` : ''}`;

describe('istio-validation in a namespace meshcni captured', () => {
  it.each(CASES.map((c) => [label(c), c] as const))('passes: %s', async (_l, c) => {
    const ns = await captured(c);
    const families: (4 | 6)[] = c.dual ? [4, 6] : [4];
    for (const f of families) {
      const r = validate(ns, f, c.uid ?? 1337, c.gid ?? 1337);
      expect(r.out).toContain('validation passed');
      expect(r.code).toBe(0);
    }
  });
});

describe('istio-validation where meshcni did not program', () => {
  it('fails (126) in a namespace with no rules', () => {
    const ns = pool.create();
    inNetns(ns, 'ip', ['link', 'set', 'lo', 'up']);
    const r = validate(ns, 4, 1337, 1337);
    expect(r.code).toBe(126);
    expect(r.out).toContain('validation timeout');
  });

  it('fails (126) for a uid and gid the rules were not written for', async () => {
    const ns = await captured({ layout: 'nft', mode: 'REDIRECT', dual: false, shape: 'native', rules: '1.30' });
    const r = validate(ns, 4, 4242, 4242);
    expect(r.code).toBe(126);
  });
});
