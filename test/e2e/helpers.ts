// End-to-end fixtures: the built agent as a real child process, pods as manifest files, sandboxes
// driven through the real upstream CNI plug-ins and the built shim. Everything is removed after.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { parseSettings, type AgentSettings } from '../../src/agent/config.js';
import { CniPluginError } from '../../src/runtime/cni-exec.js';
import { podConfList, removeBridge, Sandbox, type MeshcniEntry } from '../../src/runtime/sandbox.js';
import { normaliseSave } from '../helpers/netns.js';
import { until } from '../helpers/wait.js';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
export const SHIM = join(ROOT, 'build/Release/meshcni');
export const AGENT_MAIN = join(ROOT, 'dist/cli/main.js');

export interface PodSpec {
  namespace: string;
  name: string;
  annotations?: Record<string, string>;
  containers?: string[];
  proxyUid?: number;
  /** The istio-proxy image (its tag picks the rules with istioVersion auto); default istio/proxyv2. */
  proxyImage?: string;
}

export function podManifest(p: PodSpec): string {
  const containers = (p.containers ?? ['app', 'istio-proxy'])
    .map((c) =>
      c === 'istio-proxy'
        ? `    - name: istio-proxy\n      image: ${p.proxyImage ?? 'istio/proxyv2'}\n      securityContext:\n        runAsUser: ${p.proxyUid ?? 1337}\n        runAsGroup: ${p.proxyUid ?? 1337}\n`
        : `    - name: ${c}\n      image: example/${c}\n`,
    )
    .join('');
  const ann = Object.entries(p.annotations ?? {})
    .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}\n`)
    .join('');
  return `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${p.name}\n  namespace: ${p.namespace}\n${ann ? `  annotations:\n${ann}` : ''}spec:\n  containers:\n${containers}status:\n  phase: Running\n`;
}

/** A temp world: pods dir, socket, state, bridge; plus the agent process when started. */
export class World {
  readonly dir = mkdtempSync(join(tmpdir(), 'mcni-e2e-'));
  readonly podsDir = join(this.dir, 'pods');
  readonly socketPath = join(this.dir, 'run', 'cni.sock');
  readonly stateDir = join(this.dir, 'state');
  readonly bridge: string;
  readonly subnet: string;
  agent?: ChildProcess;
  agentLog = '';
  adminPort = 0;
  private sandboxes: Sandbox[] = [];
  private static count = 0;
  private static readonly taken = new Set<number>();

  constructor(private readonly extraConfig: Record<string, unknown> = {}) {
    World.count++;
    // Parallel test files each make bridges: take a /24 no other bridge on this machine routes yet.
    const routes = spawnSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' }).stdout;
    let n = (process.pid * 7 + World.count) % 200;
    for (let i = 0; i < 200 && (routes.includes(`10.249.${n}.0/24`) || World.taken.has(n)); i++) n = (n + 1) % 200;
    World.taken.add(n);
    this.bridge = `mcnie${process.pid % 10000}x${World.count}`.slice(0, 15);
    this.subnet = `10.249.${n}.0/24`;
    mkdirSync(this.podsDir, { recursive: true });
  }

  addPod(p: PodSpec): void {
    writeFileSync(join(this.podsDir, `${p.namespace}-${p.name}.yaml`), podManifest(p));
  }

  /** Settings for an in-process Agent on this world (no metrics listener, no periodic reconcile). */
  agentSettings(extra: Record<string, unknown> = {}): AgentSettings {
    const base = { podsDir: this.podsDir, socketPath: this.socketPath, stateDir: this.stateDir };
    return parseSettings({ ...base, metricsAddress: '', reconcileIntervalSeconds: 0, ...extra }, 'test');
  }

  /** A pod as the API server would hold it (JSON is YAML too): for shapes `addPod` does not write. */
  addPodObject(pod: { metadata: { namespace: string; name: string } } & Record<string, unknown>): void {
    writeFileSync(join(this.podsDir, `${pod.metadata.namespace}-${pod.metadata.name}.yaml`), JSON.stringify(pod));
  }

  /** Starts the built agent (`meshcni-agent serve`) and waits until /readyz says ready. */
  async startAgent(): Promise<void> {
    const cfg = join(this.dir, 'config.yaml');
    const conf = {
      podsDir: this.podsDir,
      socketPath: this.socketPath,
      stateDir: this.stateDir,
      metricsAddress: '127.0.0.1:0',
      reconcileIntervalSeconds: 0,
      logLevel: 'info',
      ...this.extraConfig,
    };
    writeFileSync(
      cfg,
      Object.entries(conf)
        .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
        .join('\n') + '\n',
    );
    const child = spawn(process.execPath, [AGENT_MAIN, 'serve', '--config', cfg], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.agent = child;
    child.stdout!.on('data', (c: Buffer) => (this.agentLog += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (this.agentLog += c.toString()));
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const m = /"adminPort":(\d+)/.exec(this.agentLog);
      if (m && /meshcni agent ready/.test(this.agentLog)) {
        this.adminPort = Number(m[1]);
        return;
      }
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`agent did not become ready:\n${this.agentLog}`);
  }

  /** The agent's log, once it matches `re`: its lines arrive over a pipe, after the answer the test awaited. */
  async waitForLog(re: RegExp, ms = 10_000): Promise<string> {
    await until(() => re.test(this.agentLog), ms, 20).catch(() => {
      throw new Error(`the agent never logged ${re}:\n${this.agentLog}`);
    });
    return this.agentLog;
  }

  async stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.agent;
    if (!child || child.exitCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill(signal);
    const code = await exited;
    this.agent = undefined;
    return code;
  }

  entry(over: Partial<MeshcniEntry> = {}): MeshcniEntry {
    return { socketPath: this.socketPath, excludeNamespaces: ['kube-system'], timeoutSeconds: 5, ...over };
  }

  sandbox(
    pod: { namespace: string; name: string },
    entry: MeshcniEntry | null = this.entry(),
    cniVersion = '1.0.0',
  ): Sandbox {
    const conf = podConfList(
      { bridge: this.bridge, subnet: this.subnet, ipamDataDir: join(this.dir, 'ipam') },
      entry,
      cniVersion,
    );
    const id = `e${process.pid % 100000}-${this.sandboxes.length}-${World.count}`;
    const s = new Sandbox(id, pod, conf, SHIM);
    s.create();
    this.sandboxes.push(s);
    return s;
  }

  admin(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolveRes, reject) => {
      const req = request({ host: '127.0.0.1', port: this.adminPort, path }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolveRes({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  async cleanup(): Promise<void> {
    for (const s of this.sandboxes) spawnSync('ip', ['netns', 'del', s.netnsName], { stdio: 'ignore' });
    this.sandboxes = [];
    await this.stopAgent('SIGKILL').catch(() => undefined);
    removeBridge(this.bridge);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `iptables-save` of a table in the sandbox, comments dropped. */
export function saveIn(netns: string, cmd = 'iptables-nft-save', table = 'nat'): string {
  // Not inNetns: an empty namespace has no such table, and that reads back as no text.
  return normaliseSave(spawnSync('ip', ['netns', 'exec', netns, cmd, '-t', table], { encoding: 'utf8' }).stdout);
}

export function nftRuleset(netns: string): string {
  return spawnSync('ip', ['netns', 'exec', netns, 'nft', 'list', 'ruleset'], { encoding: 'utf8' }).stdout.trim();
}

/** The CNI error a plug-in chain call failed with; fails the test when it succeeded instead. */
export async function pluginFailure(p: Promise<unknown>): Promise<CniPluginError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CniPluginError);
  return e as CniPluginError;
}
