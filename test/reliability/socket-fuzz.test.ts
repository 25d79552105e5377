// The agent's CNI socket under 2,000 seeded, mutated requests: every answer is a 200 or a CNI
// error (numeric code, message), nothing is programmed outside namespaces this test made, and an
// ordinary ADD still succeeds afterwards. In-process agent, real netns, root.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';
import { AgentWorld, cni, postRaw } from './helpers.js';
import { Rng, fuzzSeed } from './rng.js';

const REQUESTS = 2000;
const pool = new NetnsPool('sfz');
const worlds: AgentWorld[] = [];
afterAll(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
  pool.cleanup();
});

const POD = { namespace: 'shop', name: 'web' };

describe('socket fuzz', () => {
  it(`answers ${REQUESTS} mutated requests with 200 or a CNI error, and keeps serving`, async () => {
    const seed = fuzzSeed(15_2026);
    const rng = new Rng(seed);
    const w = new AgentWorld();
    worlds.push(w);
    w.addPod(POD);
    w.addPod({
      ...POD,
      name: 'big',
      annotations: {
        'traffic.sidecar.istio.io/excludeInboundPorts': Array.from({ length: 300 }, (_, i) => String(i + 1)).join(','),
      },
    });
    w.addPod({ ...POD, name: 'bad', annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '70000' } });
    await w.start({ podLookupTimeoutMs: 5 });
    const ns = pool.create();
    const fifo = join(w.dir, 'fifo');
    spawnSync('mkfifo', [fifo]);
    const netnses = [
      netnsPath(ns),
      fifo,
      '/dev/null',
      '/proc/self/ns/net',
      '/proc/1/ns/net',
      join(w.dir, 'missing'),
      w.dir,
      'relative/path',
      '',
      '/',
    ];
    const commands = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION', 'add', '', 'ADD\u0000'];
    const versions = ['1.0.0', '1.1.0', '0.3.1', '0.4.0', '9.9.9', '', '1'];
    const str = (): unknown =>
      rng.pick<() => unknown>([
        () => rng.str(rng.int(20)),
        () => rng.str(300 + rng.int(600)),
        () => rng.int(1e6),
        () => null,
        () => [],
        () => ({}),
        () => true,
      ])();
    const anyValue = (): unknown => (rng.chance(0.7) ? rng.str(rng.int(12), 'abcdef0123456789-_.') : str());

    function mutated(): string | Buffer {
      const body: Record<string, unknown> = {
        command: rng.chance(0.9) ? rng.pick(commands) : str(),
        containerId: rng.chance(0.8) ? `f${rng.str(1 + rng.int(70), 'abcdef0123456789')}` : anyValue(),
        netns: rng.chance(0.85) ? rng.pick(netnses) : str(),
        ifName: rng.chance(0.8) ? rng.pick(['eth0', 'net1', '', '..', 'a/b', 'x'.repeat(16), 'eth 0']) : str(),
        args: rng.chance(0.8)
          ? `K8S_POD_NAMESPACE=${rng.pick(['shop', 'kube-system', ''])};K8S_POD_NAME=${rng.pick(['web', 'big', 'bad', 'nope'])}${rng.chance(0.2) ? ';junk' : ''}`
          : str(),
        path: rng.chance(0.9) ? '/opt/cni/bin' : str(),
        config: rng.chance(0.9)
          ? {
              cniVersion: rng.pick(versions),
              name: rng.chance(0.9) ? 'k8s' : str(),
              type: 'meshcni',
              ...(rng.chance(0.2)
                ? { prevResult: rng.chance(0.5) ? { ips: [{ address: '10.0.0.5/24' }] } : str() }
                : {}),
              ...(rng.chance(0.1) ? { 'cni.dev/valid-attachments': rng.chance(0.5) ? [] : str() } : {}),
            }
          : str(),
      };
      if (rng.chance(0.1)) delete body[rng.pick(Object.keys(body))];
      if (rng.chance(0.05)) body[rng.str(5)] = str();
      const text = JSON.stringify(body);
      const r = rng.int(20);
      if (r === 0) return rng.bytes(rng.int(200)); // garbage
      if (r === 1) return text.slice(0, rng.int(text.length)); // truncated
      if (r === 2) return JSON.stringify(rng.pick([[], 'x', 1, null]));
      return text;
    }

    const failures: string[] = [];
    for (let i = 0; i < REQUESTS; i += 8) {
      const batch = Array.from({ length: Math.min(8, REQUESTS - i) }, () => mutated());
      const answers = await Promise.all(batch.map((b) => postRaw(w.socketPath, b)));
      answers.forEach((a, k) => {
        const ok =
          a.status === 200
            ? a.text === '' || a.body !== null
            : a.body !== null && typeof a.body.code === 'number' && typeof a.body.msg === 'string';
        if (!ok)
          failures.push(
            `request #${i + k} answered ${a.status} ${a.text.slice(0, 200)} to ${batch[k]!.toString().slice(0, 200)}`,
          );
      });
    }
    expect(failures, `seed ${seed} (replay with MESHCNI_FUZZ_SEED=${seed})`).toEqual([]);

    // Still alive and correct for an ordinary pod.
    const fresh = pool.create();
    const ok = await cni(w.socketPath, {
      command: 'ADD',
      containerId: `ok${process.pid}`,
      netns: netnsPath(fresh),
      pod: POD,
    });
    expect(ok.status, `seed ${seed}: ${ok.text}`).toBe(200);
    expect(inNetns(fresh, 'nft', ['list', 'tables'])).toMatch(/table ip nat/);
    expect(
      (
        await cni(w.socketPath, {
          command: 'CHECK',
          containerId: `ok${process.pid}`,
          netns: netnsPath(fresh),
          pod: POD,
        })
      ).status,
    ).toBe(200);
  });
});
