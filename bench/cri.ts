// Pod start as a kubelet drives CRI, three ways on private containerd + runc: plain (primary chain,
// app container), meshcni (meshcni chained, same app container) and istio-init (primary chain, an
// init container running iptables-restore with NET_ADMIN until it exits 0, then the app container).
// Interleaved rounds; a round counts only if the captured pod's netns holds the documented rules.
// Then churn: 32 pods at once each way. Prints the tables, writes bench/results/cri.json and the
// cri section of bench/README.md. Root. `npm run bench:cri [-- --rounds N] [--quick]`.
// Never fails on timing.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Containerd, NodeRoot, installUpstreamPlugins, primaryConfList } from '../test/helpers/containerd.js';
import type { CriClient, PodRef } from '../test/helpers/cri.js';
import { podManifest } from '../test/e2e/helpers.js';
import { ROOT, SHIM } from './harness.js';
import { loadAverage, updateBenchReadme } from './readme.js';
import { nowMs, summarize, table } from './stats.js';

const roundsArg = process.argv.indexOf('--rounds');
const QUICK = process.argv.includes('--quick');
const ROUNDS = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : QUICK ? 10 : 120;
const CHURN = 32;
const CHURN_REPEATS = QUICK ? 1 : 3;
const RULES_FILE = join(ROOT, 'bench/fixtures/istio-sidecar-default.v4.rules');
if (!Number.isInteger(ROUNDS) || ROUNDS < 10)
  throw new Error(`--rounds ${process.argv[roundsArg + 1]}: must be an integer of at least 10`);
const DOCUMENTED = {
  'traffic.sidecar.istio.io/excludeInboundPorts': '22',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
};
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

type Way = 'plain' | 'meshcni' | 'istio_init';
const WAYS: readonly Way[] = ['plain', 'meshcni', 'istio_init'];

/** The nat rules the documented file appends, as iptables-nft-save prints them. */
const EXPECTED = readFileSync(RULES_FILE, 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('-A '));

interface Node3 {
  cri: Record<Way, CriClient>;
  initImage: string;
  appImage: string;
}

/** One pod started the given way, timed from RunPodSandbox to the app container running. */
async function startPod(n: Node3, way: Way, pod: PodRef): Promise<{ ms: number; sandbox: string }> {
  const cri = n.cri[way];
  const t0 = nowMs();
  const sandbox = await cri.runPodSandbox(pod);
  if (way === 'istio_init') {
    const init = await cri.createContainer(sandbox, pod, {
      name: 'istio-init',
      image: n.initImage,
      capabilities: ['NET_ADMIN', 'NET_RAW'],
    });
    await cri.startContainer(init);
    // The kubelet learns of the exit from its PLEG; polling CRI back to back is the fastest it could.
    for (;;) {
      const st = await cri.containerStatus(init);
      if (st.state === 'CONTAINER_EXITED') {
        if (st.exitCode !== 0) {
          throw new Error(`istio-init in ${pod.name} exited ${st.exitCode}: ${st.reason} ${st.message}`);
        }
        break;
      }
      if (st.state === 'CONTAINER_UNKNOWN') throw new Error(`istio-init in ${pod.name}: state unknown (${st.reason})`);
    }
  }
  const app = await cri.createContainer(sandbox, pod, { name: 'app', image: n.appImage });
  await cri.startContainer(app);
  return { ms: nowMs() - t0, sandbox };
}

/** Whether the sandbox's netns holds the documented rules (captured ways) or no Istio chain (plain). */
async function rulesHold(cri: CriClient, sandbox: string, captured: boolean): Promise<string | undefined> {
  const { pid } = await cri.podSandboxStatus(sandbox);
  const r = spawnSync('nsenter', ['-t', String(pid), '-n', 'iptables-nft-save', '-t', 'nat'], { encoding: 'utf8' });
  const saved = new Set(r.stdout.split('\n'));
  const missing = EXPECTED.filter((l) => !saved.has(l));
  if (captured && missing.length) {
    return `missing ${missing.length} rule(s), first: ${missing[0]}\n${r.stdout}${r.stderr}`;
  }
  if (!captured && r.stdout.includes('ISTIO_')) return `unexpected Istio chains:\n${r.stdout}`;
  return undefined;
}

async function removePod(cri: CriClient, sandbox: string): Promise<void> {
  await cri.stopPodSandbox(sandbox);
  await cri.removePodSandbox(sandbox);
}

/** Busy and total jiffies of all CPUs (/proc/stat's first line). */
function cpuJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

/** CHURN pods started at once the given way: pods/s to the last app running, node CPU ms per pod. */
async function churn(n: Node3, way: Way, pods: PodRef[]): Promise<{ pods_per_s: number; cpu_ms_per_pod: number }> {
  const hz = 100; // USER_HZ
  const c0 = cpuJiffies();
  const t0 = nowMs();
  const started = await Promise.all(pods.map((p) => startPod(n, way, p)));
  const wall = nowMs() - t0;
  const c1 = cpuJiffies();
  for (const s of started) await removePod(n.cri[way], s.sandbox);
  const r = (x: number): number => Math.round(x * 10) / 10;
  const cpuMs = ((c1.busy - c0.busy) * 1000) / hz;
  return { pods_per_s: r((pods.length * 1000) / wall), cpu_ms_per_pod: r(cpuMs / pods.length) };
}

async function main(): Promise<void> {
  if (!existsSync(SHIM) || !existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('build first: npm run build');
  const loadBefore = loadAverage();
  const built = spawnSync('bash', [join(ROOT, 'scripts/build-istio-init-image.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (built.status !== 0) throw new Error(`scripts/build-istio-init-image.sh failed (${built.status})`);
  const initImage = built.stdout.trim().split('\n').at(-1)!;
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
    for (const [dir, bridge, net] of [
      [plainConf, 'mcnibp0', 1],
      [meshConf, 'mcnibm0', 2],
    ] as const) {
      mkdirSync(dir);
      writeFileSync(
        join(dir, '10-primary.conflist'),
        primaryConfList(bridge, `10.88.${net}.0/24`, join(node.dir, `ipam-${net}`)),
      );
    }

    // The built agent inside the node, chaining itself into meshConf only. It knows the round pod and
    // the churn pods (a manifest each).
    const pods = join(node.dir, 'pods');
    mkdirSync(pods);
    const podOf = (name: string): PodRef => ({ namespace: 'shop', name, uid: `uid-${name}-${process.pid}` });
    const pod = podOf('bench');
    const churnPods = Array.from({ length: CHURN }, (_, i) => podOf(`churn-${i}`));
    for (const p of [pod, ...churnPods]) {
      const manifest = podManifest({ namespace: p.namespace, name: p.name, annotations: DOCUMENTED });
      writeFileSync(join(pods, `${p.name}.yaml`), manifest.replace(/^( {2}namespace: .*)$/m, `$1\n  uid: ${p.uid}`));
    }
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
    writeFileSync(
      cfg,
      Object.entries(settings)
        .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
        .join('\n') + '\n',
    );
    agent = node.spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'serve', '--config', cfg]);
    agent.stdout!.on('data', (c: Buffer) => (agentLog += c.toString()));
    agent.stderr!.on('data', (c: Buffer) => (agentLog += c.toString()));
    const deadline = Date.now() + 30_000;
    while (
      !readFileSync(join(meshConf, '10-primary.conflist'), 'utf8').includes('"meshcni"') ||
      !existsSync(settings.socketPath)
    ) {
      if (Date.now() > deadline || agent.exitCode !== null)
        throw new Error(`the agent did not chain itself in:\n${agentLog}`);
      await sleep(100);
    }

    // plain and istio-init share one containerd (primary chain only); meshcni has its own.
    // overlayfs, as on a real node: the native snapshotter would copy the init image's 100 MB per pod.
    const snapshotter = 'overlayfs';
    const plain = new Containerd(node, {
      cniConfDir: plainConf,
      cniBinDir: bin,
      name: 'containerd-plain',
      snapshotter,
    });
    const mesh = new Containerd(node, { cniConfDir: meshConf, cniBinDir: bin, name: 'containerd-mesh', snapshotter });
    daemons.push(plain, mesh);
    const [criPlain, criMesh] = [await plain.start(), await mesh.start()];
    plain.importPodmanImage(initImage);
    const cri = { plain: criPlain, meshcni: criMesh, istio_init: criPlain };
    const n: Node3 = { cri, initImage, appImage: plain.pauseImage };
    const version = await criMesh.version();

    // Warm-up (images' first use, page cache, first-use costs in containerd and the agent), each
    // way's rules checked once.
    for (let i = 0; i < 3; i++) {
      for (const way of WAYS) {
        const s = await startPod(n, way, pod);
        const bad = await rulesHold(n.cri[way], s.sandbox, way !== 'plain');
        await removePod(n.cri[way], s.sandbox);
        if (bad) throw new Error(`warm-up, ${way}: ${bad}\n${agentLog}`);
      }
    }
    const ms: Record<Way, number[]> = { plain: [], meshcni: [], istio_init: [] };
    let rejected = 0;
    for (let r = 0; r < ROUNDS; r++) {
      // The order rotates, so no way always runs first or last.
      const order = WAYS.map((_, i) => WAYS[(i + r) % WAYS.length]!);
      const round: Partial<Record<Way, number>> = {};
      let ok = true;
      for (const way of order) {
        const s = await startPod(n, way, pod);
        const bad = await rulesHold(n.cri[way], s.sandbox, way !== 'plain');
        await removePod(n.cri[way], s.sandbox);
        if (bad) {
          ok = false;
          process.stderr.write(`bench:cri round ${r + 1}, ${way}: not counted: ${bad}\n`);
        }
        round[way] = s.ms;
      }
      if (ok) for (const way of WAYS) ms[way].push(round[way]!);
      else rejected++;
      if ((r + 1) % 20 === 0) process.stderr.write(`bench:cri ${r + 1}/${ROUNDS}\n`);
    }

    type ChurnRun = { pods_per_s: number; cpu_ms_per_pod: number };
    const churnRuns: Record<Way, ChurnRun[]> = { plain: [], meshcni: [], istio_init: [] };
    for (let i = 0; i < CHURN_REPEATS; i++) {
      for (const way of WAYS.map((_, j) => WAYS[(j + i) % WAYS.length]!))
        churnRuns[way].push(await churn(n, way, churnPods));
    }

    const leftover = existsSync(join(settings.stateDir, 'pods'))
      ? readdirSync(join(settings.stateDir, 'pods')).length
      : 0;
    const round3 = (x: number): number => Math.round(x * 1000) / 1000;
    const over = (way: Way): { median: number; ci95: [number, number] } => {
      const m = medianInterval(ms[way].map((x, i) => x - ms.plain[i]!));
      return { median: round3(m.median), ci95: [round3(m.lo), round3(m.hi)] };
    };
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
    const added = { meshcni: over('meshcni'), istio_init: over('istio_init') };
    const result = {
      date: new Date().toISOString(),
      runtime: `${version.runtimeName} ${version.runtimeVersion}`,
      machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}`,
      load_average: { before: loadBefore, after: loadAverage() },
      rounds: ROUNDS,
      rounds_counted: ms.plain.length,
      rounds_rejected: rejected,
      init_image: initImage,
      pod_start: Object.fromEntries(WAYS.map((w) => [w, summarize(ms[w])])),
      added_over_plain_ms: added,
      // A ratio of added times only means something when meshcni's is above zero beyond doubt.
      istio_init_over_meshcni_added:
        added.meshcni.ci95[0] > 0 ? round3(added.istio_init.median / added.meshcni.median) : null,
      churn: { pods: CHURN, repeats: CHURN_REPEATS, runs: churnRuns },
      agent_state_left: leftover,
      samples: Object.fromEntries(WAYS.map((w) => [w, ms[w].map(round3)])),
    };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/cri.json'), JSON.stringify(result, null, 2) + '\n');

    const ps = result.pod_start as Record<Way, ReturnType<typeof summarize>>;
    const addedCell = (w: Way): string =>
      w === 'plain' ? '—' : `${added[w].median >= 0 ? '+' : ''}${added[w].median} [${added[w].ci95.join(', ')}]`;
    const startTable = table(
      ['pod start to app running', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'over plain, median ms [95% interval]'],
      WAYS.map((w) => [w, ps[w].n, ps[w].p50_ms, ps[w].p90_ms, ps[w].p99_ms, addedCell(w)]),
    );
    const churnTable = table(
      [`churn, ${CHURN} pods at once`, 'pods/s (median)', 'node CPU ms/pod (median)', 'runs'],
      WAYS.map((w) => [
        w,
        median(churnRuns[w].map((c) => c.pods_per_s)),
        median(churnRuns[w].map((c) => c.cpu_ms_per_pod)),
        churnRuns[w].length,
      ]),
    );
    const text =
      `CRI on ${result.runtime} + runc, ${ROUNDS} interleaved rounds, ${result.rounds_counted} counted ` +
      `(rules check passed), ${rejected} rejected\n\n${startTable}\n\n` +
      (result.istio_init_over_meshcni_added === null
        ? "istio-init's added time / meshcni's: not defined — meshcni's added time is not distinguishable from zero\n"
        : `istio-init's added time / meshcni's: ${result.istio_init_over_meshcni_added}×\n`) +
      `pod start p50, istio-init / meshcni: ${(ps.istio_init.p50_ms / ps.meshcni.p50_ms).toFixed(2)}×\n\n${churnTable}`;
    console.log(text);
    if (leftover) console.log(`note: ${leftover} pod state file(s) left in the agent's state dir`);
    if (!QUICK) {
      updateBenchReadme(
        'cri',
        `\`npm run bench:cri\` — ${result.machine}, ${result.date.slice(0, 16)} UTC; load average (1/5/15 min) ` +
          `${result.load_average.before} before, ${result.load_average.after} after.\n\n\`\`\`\n${text}\n\`\`\``,
      );
    }
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
