// Fixtures for hostile-input tests: an in-process agent on a temp socket/state dir, raw CNI
// requests over the socket, and tmpfs mounts that are always unmounted again.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { parseSettings } from '../../src/agent/config.js';
import { podManifest, type PodSpec } from '../e2e/helpers.js';
import { writeFileSync } from 'node:fs';

export interface CniAnswer {
  status: number;
  body: Record<string, unknown> | null;
  text: string;
}

/** POSTs raw bytes to the agent's CNI socket; resolves with the status and body. */
export function postRaw(
  socketPath: string,
  body: string | Buffer,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<CniAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/v1/cni', method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let parsed: Record<string, unknown> | null = null;
        try {
          parsed = text ? (JSON.parse(text) as Record<string, unknown>) : null;
        } catch {
          parsed = null;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface CniCall {
  command: string;
  containerId: string;
  netns?: string;
  ifName?: string;
  pod?: { namespace: string; name: string };
}

/** One CNI request as the shim would forward it. */
export function cni(socketPath: string, c: CniCall): Promise<CniAnswer> {
  const body = {
    command: c.command,
    containerId: c.containerId,
    ...(c.netns !== undefined ? { netns: c.netns } : {}),
    ifName: c.ifName ?? 'eth0',
    args: c.pod ? `K8S_POD_NAMESPACE=${c.pod.namespace};K8S_POD_NAME=${c.pod.name}` : '',
    path: '/opt/cni/bin',
    config: { cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'meshcni' },
  };
  return postRaw(socketPath, JSON.stringify(body));
}

/** Every log line the agent wrote, parsed. */
export class LogSink {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger = pino(
    { level: 'info' },
    new Writable({
      write: (chunk: Buffer, _enc, done) => {
        for (const l of chunk.toString().split('\n')) if (l) this.lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    }),
  );
}

let count = 0;

/** A temp directory tree for one in-process agent: pods, socket, state. */
export class AgentWorld {
  readonly dir = mkdtempSync(join(tmpdir(), `mcni-rel-${process.pid}-`));
  readonly podsDir = join(this.dir, 'pods');
  readonly socketPath = join(this.dir, 'run', 'cni.sock');
  stateDir = join(this.dir, 'state');
  readonly logs = new LogSink();
  agent?: Agent;
  private mounts: string[] = [];

  constructor() {
    mkdirSync(this.podsDir, { recursive: true });
    count++;
  }

  addPod(p: PodSpec): void {
    writeFileSync(join(this.podsDir, `${p.namespace}-${p.name}.yaml`), podManifest(p));
  }

  makeAgent(extra: Record<string, unknown> = {}): Agent {
    const settings = parseSettings(
      {
        podsDir: this.podsDir,
        socketPath: this.socketPath,
        stateDir: this.stateDir,
        metricsAddress: '',
        reconcileIntervalSeconds: 0,
        ...extra,
      },
      'test',
    );
    this.agent = new Agent(settings, this.logs.logger);
    return this.agent;
  }

  async start(extra: Record<string, unknown> = {}): Promise<Agent> {
    const a = this.makeAgent(extra);
    await a.start();
    return a;
  }

  /** Mounts a tmpfs of `size` at a fresh directory inside the temp tree; unmounted in cleanup(). */
  tmpfs(size: string): string {
    const at = join(this.dir, `mnt${count}-${this.mounts.length}`);
    mkdirSync(at);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', at], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mount tmpfs at ${at}: ${r.stderr}`);
    this.mounts.push(at);
    return at;
  }

  remount(at: string, opts: string): void {
    const r = spawnSync('mount', ['-o', `remount,${opts}`, at], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`remount ${at} ${opts}: ${r.stderr}`);
  }

  async cleanup(): Promise<void> {
    await this.agent?.stop().catch(() => undefined);
    this.agent = undefined;
    for (const m of this.mounts.reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    this.mounts = [];
    rmSync(this.dir, { recursive: true, force: true });
  }
}
