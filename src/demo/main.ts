// The README's first command: a real CNI chain on this machine, end to end, then a clean slate.
// Starts the agent standalone, makes a pod netns, runs bridge + host-local + loopback + meshcni the
// way a container runtime does, shows the pod's NAT table, proves one redirected connection.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Agent } from '../agent/agent.js';
import { parseSettings } from '../agent/config.js';
import { podConfList, removeBridge, Sandbox } from '../runtime/sandbox.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const SHIM = join(ROOT, 'build/Release/meshcni');

const POD = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: demo
  uid: 6f1c2d3e-0000-4000-8000-00000000d3m0
  annotations:
    sidecar.istio.io/status: '{"containers":["istio-proxy"]}'
    traffic.sidecar.istio.io/excludeInboundPorts: "22"
    traffic.sidecar.istio.io/excludeOutboundIPRanges: "192.168.0.1/32"
spec:
  containers:
    - name: web
      image: nginx
    - name: istio-proxy
      image: istio/proxyv2
      securityContext:
        runAsUser: 1337
        runAsGroup: 1337
`;

const say = (s: string): void => void process.stdout.write(`\n\x1b[1m==> ${s}\x1b[0m\n`);

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A stand-in sidecar: listens on 15001 inside the pod and names itself to whoever connects. */
function startListener(netns: string): Promise<ChildProcess> {
  const code = `require('net').createServer((s) => s.end('answered by the sidecar listener on port 15001\\n')).listen(15001, '0.0.0.0', () => console.log('up'));`;
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolveUp, reject) => {
    child.stdout!.once('data', () => resolveUp(child));
    child.once('exit', (c) => reject(new Error(`listener exited with ${c}`)));
  });
}

function connectFromPod(netns: string, host: string, port: number): string {
  const code = `const s = require('net').connect(${port}, '${host}'); let d = ''; s.on('data', (c) => d += c); s.on('end', () => { process.stdout.write(d); }); s.on('error', (e) => { console.log('error ' + e.code); }); setTimeout(() => { console.log('timeout'); process.exit(0); }, 3000).unref();`;
  return run('ip', ['netns', 'exec', netns, process.execPath, '-e', code]).trim();
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo programs network namespaces: run it as root');
  if (!existsSync(SHIM)) throw new Error(`shim not built at ${SHIM}: run npm run build`);
  const id = `demo${process.pid}`;
  const tmp = mkdtempSync(join(tmpdir(), 'meshcni-demo-'));
  const bridge = `mcnid${process.pid % 100000}`;
  const cleanups: (() => Promise<void> | void)[] = [
    () => rmSync(tmp, { recursive: true, force: true }),
    () => removeBridge(bridge),
  ];
  try {
    writeFileSync(join(tmp, 'pods.yaml'), POD);
    const settings = parseSettings(
      {
        podsDir: tmp,
        socketPath: join(tmp, 'run', 'cni.sock'),
        stateDir: join(tmp, 'state'),
        metricsAddress: '127.0.0.1:0',
        reconcileIntervalSeconds: 0,
        logLevel: 'info',
      },
      'demo',
    );
    say('starting meshcni-agent (standalone: pods from a manifest directory)');
    const agent = new Agent(settings, pino({ level: 'info' }, pino.destination(1)));
    await agent.start();
    cleanups.unshift(() => agent.stop());

    const conf = podConfList(
      { bridge, subnet: '10.248.0.0/24', ipamDataDir: join(tmp, 'ipam') },
      { socketPath: settings.socketPath },
    );
    const sandbox = new Sandbox(id, { namespace: 'demo', name: 'web' }, conf, SHIM);
    say(`creating the pod sandbox netns ${sandbox.netnsName} and running the CNI chain: bridge → loopback → meshcni`);
    sandbox.create();
    cleanups.unshift(() => sandbox.destroy());
    const result = await sandbox.add();
    process.stdout.write(`CNI ADD result (printed by the meshcni shim): ${JSON.stringify(result)}\n`);

    say(`inside the pod: iptables -t nat -L -n -v --line-numbers`);
    process.stdout.write(
      run('ip', ['netns', 'exec', sandbox.netnsName, 'iptables', '-t', 'nat', '-L', '-n', '-v', '--line-numbers']),
    );

    say('proving one redirected connection');
    const listener = await startListener(sandbox.netnsName);
    cleanups.unshift(() => void listener.kill('SIGKILL'));
    const gateway = '10.248.0.1';
    process.stdout.write(
      `pod (uid 0, not the proxy's 1337) connects to ${gateway}:8080 — nothing listens there on the host\n`,
    );
    const answer = connectFromPod(sandbox.netnsName, gateway, 8080);
    process.stdout.write(`reply: ${answer}\n`);
    if (!answer.includes('port 15001')) throw new Error('the connection was not redirected to the sidecar port');
    say('captured: the connection was redirected to the sidecar on 15001. Cleaning up.');
  } finally {
    for (const c of cleanups) {
      try {
        await c();
      } catch (e) {
        process.stderr.write(`cleanup: ${(e as Error).message}\n`);
      }
    }
  }
}

main().then(
  () => process.stdout.write('\ndemo done: namespace, bridge, agent and temp files removed\n'),
  (e: unknown) => {
    process.stderr.write(`meshcni demo failed: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
