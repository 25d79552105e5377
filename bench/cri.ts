// What meshcni adds to a pod's start as a kubelet sees it: CRI RunPodSandbox on containerd with the
// node's primary network alone vs with meshcni chained after it (the built agent capturing the pod),
// interleaved round by round. Reports the median of the paired differences with a 95% interval and
// writes bench/results/cri.json. Root. `npm run bench:cri [-- --rounds N]`. Never fails on timing.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Containerd, NodeRoot, installUpstreamPlugins, primaryConfList } from '../test/helpers/containerd.js';
import type { CriClient, PodRef } from '../test/helpers/cri.js';
import { podManifest } from '../test/e2e/helpers.js';
import { ROOT, SHIM } from './harness.js';
import { nowMs, summarize, table } from './stats.js';

const roundsArg = process.argv.indexOf('--rounds');
const ROUNDS = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 150;
if (!Number.isInteger(ROUNDS) || ROUNDS < 10) throw new Error(`--rounds ${process.argv[roundsArg + 1]}: must be an integer of at least 10`);
const DOCUMENTED = { 'traffic.sidecar.istio.io/excludeInboundPorts': '22', 'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32' };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Median of paired differences and its distribution-free 95% interval: the order statistics at
 * n/2 ∓ 1.96·√n/2 (the binomial interval for a median), so no assumption about the shape.
 */
export function medianInterval(diffs: readonly number[]): { median: number; lo: number; hi: number } {
  const s = [...diffs].sort((a, b) => a - b);
  const n = s.length;
  const half = 0.98 * Math.sqrt(n);
  const at = (i: number): number => s[Math.min(n - 1, Math.max(0, i))]!;
  const median = n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, lo: at(Math.floor(n / 2 - half) - 1), hi: at(Math.ceil(n / 2 + half) - 1) };
}

async function timedSandbox(cri: CriClient, pod: PodRef): Promise<number> {
  const t0 = nowMs();
  const id = await cri.runPodSandbox(pod);
  const ms = nowMs() - t0;
  await cri.stopPodSandbox(id);
  await cri.removePodSandbox(id);
  return ms;
}

async function main(): Promise<void> {
  if (!existsSync(SHIM) || !existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('build first: npm run build');
  const node = new NodeRoot();
  const daemons: Containerd[] = [];
  let agent: ChildProcess | undefined;
  let agentLog = '';
  try {
    await node.start();
    // containerd 1.6 mounts sandbox namespaces under /var/run/netns: the node's own, not the host's.
    node.remap('/var/run/netns');
    const bin = join(node.dir, 'bin');
    installUpstreamPlugins(bin);
    const plainConf = join(node.dir, 'conf-plain');
    const meshConf = join(node.dir, 'conf-mesh');
    for (const [dir, bridge, net] of [[plainConf, 'mcnibp0', 1], [meshConf, 'mcnibm0', 2]] as const) {
      mkdirSync(dir);
      writeFileSync(join(dir, '10-primary.conflist'), primaryConfList(bridge, `10.88.${net}.0/24`, join(node.dir, `ipam-${net}`)));
    }

    // The built agent inside the node, chaining itself into meshConf only.
    const pods = join(node.dir, 'pods');
    mkdirSync(pods);
    const pod: PodRef = { namespace: 'shop', name: 'bench', uid: `uid-bench-${process.pid}` };
    writeFileSync(join(pods, 'bench.yaml'), podManifest({ namespace: 'shop', name: 'bench', annotations: DOCUMENTED }).replace(/^( {2}namespace: .*)$/m, `$1\n  uid: ${pod.uid}`));
    const cfg = join(node.dir, 'agent.yaml');
    const settings = {
      podsDir: pods,
      socketPath: join(node.dir, 'run', 'cni.sock'),
      stateDir: join(node.dir, 'state'),
      metricsAddress: '',
      logLevel: 'warn',
      reconcileIntervalSeconds: 0,
      install: true,
      cniConfDir: meshConf,
      cniBinDir: bin,
      excludeNamespaces: ['kube-system'],
    };
    writeFileSync(cfg, Object.entries(settings).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n') + '\n');
    agent = node.spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'serve', '--config', cfg]);
    agent.stdout!.on('data', (c: Buffer) => (agentLog += c.toString()));
    agent.stderr!.on('data', (c: Buffer) => (agentLog += c.toString()));
    const deadline = Date.now() + 30_000;
    while (!readFileSync(join(meshConf, '10-primary.conflist'), 'utf8').includes('"meshcni"') || !existsSync(settings.socketPath)) {
      if (Date.now() > deadline || agent.exitCode !== null) throw new Error(`the agent did not chain itself in:\n${agentLog}`);
      await sleep(100);
    }

    const plain = new Containerd(node, { cniConfDir: plainConf, cniBinDir: bin, name: 'containerd-plain' });
    const mesh = new Containerd(node, { cniConfDir: meshConf, cniBinDir: bin, name: 'containerd-mesh' });
    daemons.push(plain, mesh);
    const [criPlain, criMesh] = [await plain.start(), await mesh.start()];
    const version = await criMesh.version();

    // Warm-up (page cache, first-use costs in containerd and the agent), then interleaved rounds;
    // the order alternates so neither arm always runs second.
    for (let i = 0; i < 5; i++) {
      await timedSandbox(criPlain, pod);
      await timedSandbox(criMesh, pod);
    }
    // The two arms differ in exactly one thing: meshcni captured the pod in one and not the other.
    for (const [cri, captured] of [[criMesh, true], [criPlain, false]] as const) {
      const id = await cri.runPodSandbox(pod);
      const { pid } = await cri.podSandboxStatus(id);
      const rules = spawnSync('nsenter', ['-t', String(pid), '-n', 'nft', 'list', 'ruleset'], { encoding: 'utf8' }).stdout;
      await cri.stopPodSandbox(id);
      await cri.removePodSandbox(id);
      if (rules.includes('ISTIO_OUTPUT') !== captured) throw new Error(`sandbox via ${cri.socket}: capture ${captured ? 'missing' : 'unexpected'}:\n${rules}\n${agentLog}`);
    }
    const withMs: number[] = [];
    const withoutMs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      if (r % 2) {
        withMs.push(await timedSandbox(criMesh, pod));
        withoutMs.push(await timedSandbox(criPlain, pod));
      } else {
        withoutMs.push(await timedSandbox(criPlain, pod));
        withMs.push(await timedSandbox(criMesh, pod));
      }
      if ((r + 1) % 25 === 0) process.stderr.write(`bench:cri ${r + 1}/${ROUNDS}\n`);
    }
    // Every captured round reached the agent: its state dir is empty again (DEL ran), and the log
    // holds no failure.
    const leftover = existsSync(join(settings.stateDir, 'pods')) ? readdirSync(join(settings.stateDir, 'pods')).length : 0;
    const added = medianInterval(withMs.map((w, i) => w - withoutMs[i]!));
    const round3 = (x: number): number => Math.round(x * 1000) / 1000;
    const result = {
      date: new Date().toISOString(),
      runtime: `${version.runtimeName} ${version.runtimeVersion}`,
      rounds: ROUNDS,
      cpus: spawnSync('nproc', { encoding: 'utf8' }).stdout.trim(),
      without_meshcni: summarize(withoutMs),
      with_meshcni: summarize(withMs),
      added_ms: { median: round3(added.median), ci95: [round3(added.lo), round3(added.hi)] },
      agent_state_left: leftover,
      samples: { with_ms: withMs.map(round3), without_ms: withoutMs.map(round3) },
    };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/cri.json'), JSON.stringify(result, null, 2) + '\n');
    const s = (x: ReturnType<typeof summarize>): (string | number)[] => [x.p50_ms, x.p90_ms, x.p99_ms];
    console.log(`CRI RunPodSandbox on ${result.runtime}, ${ROUNDS} interleaved rounds (ms)`);
    console.log(table(['', 'p50', 'p90', 'p99'], [['without meshcni', ...s(result.without_meshcni)], ['with meshcni', ...s(result.with_meshcni)]]));
    console.log(`added by meshcni: median ${result.added_ms.median} ms, 95% interval [${result.added_ms.ci95.join(', ')}] ms`);
    if (leftover) console.log(`note: ${leftover} pod state file(s) left in the agent's state dir`);
  } finally {
    for (const d of daemons) await d.stop();
    if (agent && agent.exitCode === null) {
      const gone = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGTERM');
      await gone;
    }
    await node.stop();
  }
}

await main();
