// Real sockets through the 1.17.8 rules that were only checked as text: TPROXY inbound, reroute
// (virtual machine) interfaces, DNS capture with its conntrack zones, dual stack. Each test makes its
// own netns and veths (10.251.N.0/24, fd51:N::/64 — addresses that exist only there), for both layouts.
// Servers and clients are python3 (IP_TRANSPARENT is not reachable from Node). Root.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import { applyRouting, applyTables } from '../../src/nft/apply.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';
import { podObject } from './golden.js';

const pool = new NetnsPool('ti');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  pool.cleanup();
});

/**
 * Listeners: `tcp:PORT`, `udp:PORT` (dual stack, answer WHO:PORT), `udplo:PORT` (127.0.0.1 only, where
 * a REDIRECT of locally sent packets delivers, so the reply leaves from the NATed address), `ttcp:PORT` (IPv4 with
 * IP_TRANSPARENT, answers WHO:orig=ADDR:PORT — the accepted socket's local address is the original
 * destination under TPROXY).
 */
const SERVER = String.raw`
import os, socket, sys, threading
who = os.environ['WHO']
def v4(a): return a[7:] if a.startswith('::ffff:') else a
def tcp(port, transparent):
    fam = socket.AF_INET if transparent else socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if transparent: s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
    else: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('0.0.0.0' if transparent else '::', port)); s.listen(64)
    while True:
        c, _ = s.accept(); l = c.getsockname()
        c.sendall((who + (':orig=%s:%d' % (v4(l[0]), l[1]) if transparent else ':%d' % port)).encode()); c.close()
def udp(port, loopback):
    s = socket.socket(socket.AF_INET if loopback else socket.AF_INET6, socket.SOCK_DGRAM)
    if not loopback: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('127.0.0.1' if loopback else '::', port))
    while True:
        d, a = s.recvfrom(512); s.sendto(('%s:%d' % (who, port)).encode(), a)
for spec in sys.argv[1:]:
    kind, port = spec.split(':')
    udp_kind = kind.startswith('udp')
    threading.Thread(target=udp if udp_kind else tcp, args=(int(port), kind == 'udplo' if udp_kind else kind == 'ttcp'), daemon=True).start()
print('up', flush=True)
threading.Event().wait()
`;

/** One request: tcp or udp to host:port, optionally from a source address; prints the reply or the failure. */
const CLIENT = String.raw`
import socket, sys
proto, host, port, src, mark = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM); s.settimeout(2)
if src: s.bind((src, 0))
if mark: s.setsockopt(socket.SOL_SOCKET, 36, mark)  # SO_MARK
try:
    if proto == 'tcp': s.connect((host, port)); print(s.recv(512).decode())
    else: s.connect((host, port)); s.send(b'q'); print(s.recv(512).decode())  # connected: only host:port may answer
except Exception as e: print('error:' + type(e).__name__)
`;

/** Debian's python3 (CI installs it); also runnable by the unprivileged uids the tests switch to. */
const PY = '/usr/bin/python3';

function listen(ns: string, who: string, specs: string[], ids?: number): Promise<void> {
  const as = ids === undefined ? [] : ['setpriv', `--reuid=${ids}`, `--regid=${ids}`, '--clear-groups'];
  const child = spawn('ip', ['netns', 'exec', ns, ...as, PY, '-c', SERVER, ...specs], {
    env: { ...process.env, WHO: who },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`python3 listener in ${ns} exited ${c}`)));
  });
}

/** From `ns`, as root or as uid=gid=`ids`: the reply, or `error:…`. */
function request(
  ns: string,
  proto: 'tcp' | 'udp',
  host: string,
  port: number,
  o: { ids?: number; src?: string; mark?: number } = {},
): string {
  const py = [PY, '-c', CLIENT, proto, host, String(port), o.src ?? '', String(o.mark ?? 0)];
  const cmd = o.ids === undefined ? py : ['setpriv', `--reuid=${o.ids}`, `--regid=${o.ids}`, '--clear-groups', ...py];
  return inNetns(ns, cmd[0]!, cmd.slice(1)).trim();
}

let links = 0;
/** A veth between two namespaces with IPv4 and IPv6 addresses on both ends (made here, removed with the netns). */
function link(
  a: string,
  b: string,
): { aIf: string; bIf: string; aIp: string; bIp: string; aIp6: string; bIp6: string } {
  links++;
  const n = (process.pid * 3 + links * 11) % 250;
  const [aIf, bIf] = [`mti${process.pid % 10000}a${links}`, `mti${process.pid % 10000}b${links}`];
  execFileSync('ip', ['link', 'add', aIf, 'netns', a, 'type', 'veth', 'peer', 'name', bIf, 'netns', b]);
  const r = {
    aIf,
    bIf,
    aIp: `10.251.${n}.2`,
    bIp: `10.251.${n}.1`,
    aIp6: `fd51:${n.toString(16)}::2`,
    bIp6: `fd51:${n.toString(16)}::1`,
  };
  for (const [ns, ifc, ip, ip6] of [
    [a, aIf, r.aIp, r.aIp6],
    [b, bIf, r.bIp, r.bIp6],
  ] as const) {
    inNetns(ns, 'ip', ['addr', 'add', `${ip}/24`, 'dev', ifc]);
    inNetns(ns, 'ip', ['-6', 'addr', 'add', `${ip6}/64`, 'dev', ifc, 'nodad']);
    inNetns(ns, 'ip', ['link', 'set', ifc, 'up']);
  }
  return r;
}

const LAYOUTS = ['iptables', 'nft'] as const;
const proxy = (env: Record<string, string> = {}) => ({ name: 'istio-proxy', runAsUser: 1337, runAsGroup: 1337, env });

async function capturedPod(
  layout: (typeof LAYOUTS)[number],
  annotations: Record<string, string>,
  env: Record<string, string> = {},
  istioVersion: '1.17' | '1.30' = '1.17',
) {
  const config = parseCaptureConfig({ layout, istioVersion });
  const plan = planRules(podObject({ name: 'ti', annotations, containers: [{ name: 'app' }, proxy(env)] }), config);
  if (!plan.capture) throw new Error('expected capture');
  const pod = pool.create();
  const peer = pool.create();
  const l = link(pod, peer);
  return {
    pod,
    peer,
    podIp: l.aIp,
    peerIp: l.bIp,
    podIp6: l.aIp6,
    peerIp6: l.bIp6,
    peerIf: l.bIf,
    /** Programs the pod's rules and routing (after any extra links, as the CNI chain would). */
    program: async (): Promise<void> => {
      if (plan.routing) await applyRouting(netnsPath(pod), plan.routing);
      await applyTables(netnsPath(pod), plan.tables);
    },
  };
}

describe.each(LAYOUTS)('TPROXY inbound (%s layout)', (layout) => {
  it('a transparent listener on 15006 receives the original destination; on lo only 1338-marked hairpins reach it', async () => {
    const w = await capturedPod(layout, { 'sidecar.istio.io/interceptionMode': 'TPROXY' });
    await w.program();
    await listen(w.pod, 'envoy', ['ttcp:15006']);
    await listen(w.pod, 'app', ['tcp:9080']);
    expect(request(w.peer, 'tcp', w.podIp, 9080)).toBe(`envoy:orig=${w.podIp}:9080`);
    // Unmarked traffic arriving on lo (the app calling its own pod IP) is returned by the guard.
    expect(request(w.pod, 'tcp', w.podIp, 9080, { ids: 1000 })).toBe('app:9080');
    // The guard is `-i lo -m mark ! --mark 1338 -j RETURN` (1.17.8): a hairpin carrying Envoy
    // outbound's mark 1338 is the one that reaches TPROXY (Envoy outbound → Envoy inbound → app).
    // Root sends it here with SO_MARK 1338, so no nat rule for the proxy uid is involved.
    expect(request(w.pod, 'tcp', w.podIp, 9080, { mark: 1338 })).toBe(`envoy:orig=${w.podIp}:9080`);
    expect(request(w.pod, 'tcp', w.podIp, 9080, { mark: 1337 })).toBe('app:9080');
    // The proxy's own call to the pod IP goes to the inbound listener through nat ISTIO_IN_REDIRECT.
    expect(request(w.pod, 'tcp', w.podIp, 9080, { ids: 1337 })).toBe('envoy:orig=127.0.0.1:15006');
    // The excluded status port is never intercepted.
    await listen(w.pod, 'agent', ['tcp:15021']);
    expect(request(w.peer, 'tcp', w.podIp, 15021)).toBe('agent:15021');
  });
});

describe.each(LAYOUTS)('reroute (virtual machine) interface (%s layout)', (layout) => {
  /** pod ⇄ peer, and pod ⇄ vm on a second veth whose pod end is the annotated interface. */
  async function vmWorld(include?: (peerIp: string) => string) {
    const pod = pool.create();
    const peer = pool.create();
    const vm = pool.create();
    const p = link(pod, peer);
    const v = link(pod, vm);
    for (const dst of [p.bIp, p.aIp]) inNetns(vm, 'ip', ['route', 'add', `${dst}/32`, 'via', v.aIp]);
    const annotations: Record<string, string> = { 'istio.io/reroute-virtual-interfaces': v.aIf };
    if (include) annotations['traffic.sidecar.istio.io/includeOutboundIPRanges'] = include(p.bIp);
    const plan = planRules(
      podObject({ name: 'ti', annotations, containers: [{ name: 'app' }, proxy()] }),
      parseCaptureConfig({ layout }),
    );
    if (!plan.capture) throw new Error('expected capture');
    await applyTables(netnsPath(pod), plan.tables);
    await listen(pod, 'pod', ['tcp:15001', 'tcp:15021']);
    return { pod, peer, vm, podIp: p.aIp, peerIp: p.bIp };
  }

  it('with "*" every TCP connection entering on the VM interface lands on 15001', async () => {
    const w = await vmWorld();
    expect(request(w.vm, 'tcp', w.peerIp, 8080)).toBe('pod:15001');
    expect(request(w.vm, 'tcp', w.podIp, 15021)).toBe('pod:15001');
    // Traffic entering on the pod's own interface is not rerouted (15021 is an excluded inbound port).
    expect(request(w.peer, 'tcp', w.podIp, 15021)).toBe('pod:15021');
  });

  it('with an include-CIDR list only the listed destinations land on 15001', async () => {
    const w = await vmWorld((peerIp) => `${peerIp}/32`);
    expect(request(w.vm, 'tcp', w.peerIp, 8080)).toBe('pod:15001');
    // Not in the list: the interface's RETURN, delivered to the pod's own 15021.
    expect(request(w.vm, 'tcp', w.podIp, 15021)).toBe('pod:15021');
  });
});

describe.each(LAYOUTS)('DNS capture (%s layout)', (layout) => {
  it("an app's UDP and TCP queries land on 15053, the proxy's own go out; conntrack zones 2 and 1", async () => {
    const w = await capturedPod(layout, {}, { ISTIO_META_DNS_CAPTURE: 'true' });
    await w.program();
    // The agent runs as the proxy uid: its replies (sport 15053) are what the zone-2 rule matches.
    await listen(w.pod, 'agent', ['udplo:15053', 'tcp:15053'], 1337);
    await listen(w.peer, 'dns', ['udp:53', 'tcp:53']);
    expect(request(w.pod, 'udp', w.peerIp, 53, { ids: 1000 })).toBe('agent:15053');
    expect(request(w.pod, 'tcp', w.peerIp, 53, { ids: 1000 })).toBe('agent:15053');
    expect(request(w.pod, 'udp', w.peerIp, 53, { ids: 1337 })).toBe('dns:53');
    expect(request(w.pod, 'tcp', w.peerIp, 53, { ids: 1337 })).toBe('dns:53');
    // The kernel's conntrack table: the app's query and the agent's answer share one zone-2 entry
    // (answered, NATed to 15053); the proxy's own query to the server is in zone 1.
    const ct = inNetns(w.pod, 'conntrack', ['-L', '-p', 'udp']).split('\n');
    const app = ct.filter((l) => l.includes(`dst=${w.peerIp} `) && l.includes('sport=15053'));
    expect(app).toHaveLength(1);
    expect(app[0]).toMatch(/zone=2/);
    expect(app[0]).not.toMatch(/UNREPLIED/);
    const own = ct.filter((l) => l.includes(`dst=${w.peerIp} `) && /src=\S+ dst=\S+ sport=53 /.test(l));
    expect(own).toHaveLength(1);
    expect(own[0]).toMatch(/zone=1/);
  });
});

describe.each(LAYOUTS)('dual stack (%s layout)', (layout) => {
  it('IPv6 outbound lands on 15001, inbound on 15006, and ::6 on lo works for the inbound passthrough', async () => {
    const w = await capturedPod(layout, {}, { ISTIO_DUAL_STACK: 'true' });
    await w.program();
    await listen(w.pod, 'pod', ['tcp:15001', 'tcp:15006', 'tcp:9080']);
    await listen(w.peer, 'peer', ['tcp:8080']);
    expect(request(w.pod, 'tcp', w.peerIp6, 8080, { ids: 1000 })).toBe('pod:15001');
    expect(request(w.pod, 'tcp', w.peerIp6, 8080, { ids: 1337 })).toBe('peer:8080');
    expect(request(w.peer, 'tcp', w.podIp6, 9080)).toBe('pod:15006');
    // Envoy's inbound passthrough connects from ::6 to the app: the address exists, nothing redirects it.
    expect(inNetns(w.pod, 'ip', ['-6', 'addr', 'show', 'dev', 'lo'])).toContain('inet6 ::6/128');
    expect(request(w.pod, 'tcp', w.podIp6, 9080, { ids: 1337, src: '::6' })).toBe('pod:9080');
    // IPv4 behaves the same in the same transaction.
    expect(request(w.pod, 'tcp', w.peerIp, 8080, { ids: 1000 })).toBe('pod:15001');
  });

  it('include-CIDR lists of both families: only the listed IPv4 and IPv6 destinations land on 15001', async () => {
    const pod = pool.create();
    const peer = pool.create();
    const l = link(pod, peer);
    // A second address of each family on the peer, left out of the lists.
    const other = l.bIp.replace(/\.1$/, '.3');
    const other6 = l.bIp6.replace(/::1$/, '::3');
    inNetns(peer, 'ip', ['addr', 'add', `${other}/24`, 'dev', l.bIf]);
    inNetns(peer, 'ip', ['-6', 'addr', 'add', `${other6}/64`, 'dev', l.bIf, 'nodad']);
    const annotations = { 'traffic.sidecar.istio.io/includeOutboundIPRanges': `${l.bIp}/32,${l.bIp6}/128` };
    const plan = planRules(
      podObject({ name: 'ti', annotations, containers: [{ name: 'app' }, proxy({ ISTIO_DUAL_STACK: 'true' })] }),
      parseCaptureConfig({ layout }),
    );
    if (!plan.capture) throw new Error('expected capture');
    if (plan.routing) await applyRouting(netnsPath(pod), plan.routing);
    await applyTables(netnsPath(pod), plan.tables);
    await listen(pod, 'pod', ['tcp:15001']);
    await listen(peer, 'peer', ['tcp:8080']);
    expect(request(pod, 'tcp', l.bIp, 8080, { ids: 1000 })).toBe('pod:15001');
    expect(request(pod, 'tcp', l.bIp6, 8080, { ids: 1000 })).toBe('pod:15001');
    // Past the list each family's trailing RETURN lets the connection go out uncaptured.
    expect(request(pod, 'tcp', other, 8080, { ids: 1000 })).toBe('peer:8080');
    expect(request(pod, 'tcp', other6, 8080, { ids: 1000 })).toBe('peer:8080');
  });
});

// Where Istio 1.30.3's rules send traffic elsewhere than 1.17.8's, per layout; each row can only pass
// under the rule set it names.
const LAYOUT_RULES = LAYOUTS.flatMap((l) => (['1.17', '1.30'] as const).map((v) => [l, v] as const));
describe.each(LAYOUT_RULES)('Istio %s layout, %s rules', (layout, v) => {
  const not = v === '1.30' ? 'not ' : '';
  it(`the proxy's connection to its own pod IP on the HBONE port 15008 is ${not}redirected`, async () => {
    const w = await capturedPod(layout, {}, {}, v);
    await w.program();
    await listen(w.pod, 'pod', ['tcp:15006', 'tcp:15008', 'tcp:9080']);
    // Locally delivered, so over lo: 1.30's owner → ISTIO_IN_REDIRECT rule skips `! --dport 15008`.
    expect(request(w.pod, 'tcp', w.podIp, 15008, { ids: 1337 })).toBe(v === '1.30' ? 'pod:15008' : 'pod:15006');
    // Any other port to itself goes to the inbound listener under both.
    expect(request(w.pod, 'tcp', w.podIp, 9080, { ids: 1337 })).toBe('pod:15006');
  });

  const where = v === '1.30' ? 'goes out' : 'still lands on 15053';
  it(`with DNS capture and outbound port 53 excluded, an app's UDP query ${where}`, async () => {
    const excluded = { 'traffic.sidecar.istio.io/excludeOutboundPorts': '53' };
    const w = await capturedPod(layout, excluded, { ISTIO_META_DNS_CAPTURE: 'true' }, v);
    await w.program();
    await listen(w.pod, 'agent', ['udplo:15053', 'tcp:15053'], 1337);
    await listen(w.peer, 'dns', ['udp:53', 'tcp:53']);
    // 1.30 sends UDP through ISTIO_OUTPUT, whose excluded-port RETURNs (TCP and UDP) come first;
    // 1.17 redirects UDP DNS in nat OUTPUT itself, ahead of ISTIO_OUTPUT.
    expect(request(w.pod, 'udp', w.peerIp, 53, { ids: 1000 })).toBe(v === '1.30' ? 'dns:53' : 'agent:15053');
    // TCP port 53 is excluded under both.
    expect(request(w.pod, 'tcp', w.peerIp, 53, { ids: 1000 })).toBe('dns:53');
  });
});
