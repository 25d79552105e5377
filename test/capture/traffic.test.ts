// Real traffic through captured pods, for both layouts: a pod netns and a peer netns joined by a
// veth pair this test creates (10.250.N.0/24, addresses that exist only there). Listeners in the
// pod answer with the port they accepted on, so a reply says where a connection landed. Root.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCaptureConfig } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import { applyRouting, applyTables } from '../../src/nft/apply.js';
import type { TableContents } from '../../src/nft/model.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';
import { podObject } from './golden.js';

const pool = new NetnsPool('tr');
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  pool.cleanup();
});

const SERVER = `
const net = require('net');
for (const p of process.argv.slice(1).map(Number)) {
  net.createServer((s) => s.end(process.env.WHO + ':' + s.localPort)).listen(p, '0.0.0.0');
}
setTimeout(() => console.log('up'), 100);`;

function listen(ns: string, who: string, ports: number[]): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER, ...ports.map(String)], {
    env: { ...process.env, WHO: who },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`listener exited ${c}`)));
  });
}

/** Connects from `ns` (optionally as uid:gid) and returns the reply, or the error code. */
function connect(ns: string, host: string, port: number, ids?: number): string {
  const code = `const s=require('net').connect(${port},'${host}');let d='';s.on('data',c=>d+=c);s.on('end',()=>{console.log(d)});s.on('error',e=>console.log('error:'+e.code));setTimeout(()=>{console.log('timeout');process.exit(0)},2000).unref();`;
  const prefix = ids === undefined ? [] : ['setpriv', `--reuid=${ids}`, `--regid=${ids}`, '--clear-groups'];
  const cmd = prefix.length ? prefix[0]! : process.execPath;
  const args = prefix.length ? [...prefix.slice(1), process.execPath, '-e', code] : ['-e', code];
  return inNetns(ns, cmd, args).trim();
}

let subnet = 0;
async function world(
  tables: TableContents[],
  routing?: Parameters<typeof applyRouting>[1],
): Promise<{ pod: string; peer: string; podIp: string; peerIp: string }> {
  subnet++;
  const n = (process.pid + subnet * 7) % 250;
  const pod = pool.create();
  const peer = pool.create();
  const [podIf, peerIf] = [`mtp${process.pid % 10000}${subnet}`, `mtq${process.pid % 10000}${subnet}`];
  execFileSync('ip', ['link', 'add', podIf, 'netns', pod, 'type', 'veth', 'peer', 'name', peerIf, 'netns', peer]);
  const podIp = `10.250.${n}.2`;
  const peerIp = `10.250.${n}.1`;
  inNetns(pod, 'ip', ['addr', 'add', `${podIp}/24`, 'dev', podIf]);
  inNetns(pod, 'ip', ['link', 'set', podIf, 'up']);
  inNetns(peer, 'ip', ['addr', 'add', `${peerIp}/24`, 'dev', peerIf]);
  inNetns(peer, 'ip', ['link', 'set', peerIf, 'up']);
  if (routing) await applyRouting(netnsPath(pod), routing);
  await applyTables(netnsPath(pod), tables);
  await listen(pod, 'pod', [15001, 15006, 15021]);
  await listen(peer, 'peer', [8080, 9080]);
  return { pod, peer, podIp, peerIp };
}

describe.each(['iptables', 'nft'] as const)('traffic through a captured pod (%s layout)', (layout) => {
  const plan = planRules(podObject({ name: 'traffic' }), parseCaptureConfig({ layout }));
  if (!plan.capture) throw new Error('not captured');

  it("redirects an app's outbound connection to 15001, and not the proxy's own", async () => {
    const w = await world(plan.tables);
    expect(connect(w.pod, w.peerIp, 8080)).toBe('pod:15001');
    expect(connect(w.pod, w.peerIp, 8080, 1337)).toBe('peer:8080');
    // The excluded outbound port 15020 is left alone (nothing listens there on the peer).
    expect(connect(w.pod, w.peerIp, 15020)).toBe('error:ECONNREFUSED');
  });

  it('redirects an inbound connection to 15006, except to an excluded port', async () => {
    const w = await world(plan.tables);
    expect(connect(w.peer, w.podIp, 9080)).toBe('pod:15006');
    expect(connect(w.peer, w.podIp, 15021)).toBe('pod:15021');
  });
});

describe('one transaction for IPv4 and IPv6', () => {
  it('a late failure leaves neither IPv4 nor IPv6 rules behind', async () => {
    const dual = planRules(
      podObject({
        name: 'dual',
        containers: [{ name: 'app' }, { name: 'istio-proxy', runAsUser: 1337, env: { ISTIO_DUAL_STACK: 'true' } }],
      }),
      parseCaptureConfig({}),
    );
    if (!dual.capture) throw new Error('not captured');
    const last = dual.tables.at(-1)!;
    expect(last.table.family).toBe('ip6');
    const broken: TableContents[] = [
      ...dual.tables.slice(0, -1),
      {
        ...last,
        rules: [
          ...last.rules,
          {
            family: 'ip6',
            table: last.table.name,
            chain: 'ISTIO_OUTPUT',
            exprs: [{ type: 'verdict', verdict: { code: 'jump', chain: 'NO_SUCH_CHAIN' } }],
          },
        ],
      },
    ];
    const ns = pool.create();
    await expect(applyTables(netnsPath(ns), broken)).rejects.toThrow(/add rule ip6 nat ISTIO_OUTPUT #\d+.*ENOENT/);
    expect(inNetns(ns, 'nft', ['list', 'ruleset']).trim()).toBe('');
    // The intact plan applies fine afterwards, both families.
    await applyTables(netnsPath(ns), dual.tables);
    expect(inNetns(ns, 'iptables-nft-save', ['-t', 'nat'])).toContain('-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN');
    expect(inNetns(ns, 'ip6tables-nft-save', ['-t', 'nat'])).toContain('-A ISTIO_OUTPUT -d ::1/128 -j RETURN');
  });
});
