// The C driver (bench/driver.c) as a resident child: queue execs and netlink replays, run them at a
// concurrency, get per-job wall times measured in C (posix_spawn → waitpid), as a runtime sees them.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { ROOT } from './harness.js';

export const DRIVER = join(ROOT, 'build/bench/driver');

export interface JobResult {
  ms: number;
  status: number;
  /** When the job started, CLOCK_MONOTONIC ms (comparable with process.hrtime). */
  startMs: number;
  /** CPU the job used, user + system ms: the child's rusage (an exec), or the driver thread's (a replay). */
  cpuMs: number;
}

const clean = (s: string, what: string): string => {
  if (/[\t\n]/.test(s)) throw new Error(`driver ${what} '${s}' contains a tab or newline`);
  return s;
};

export class Driver {
  private readonly child: ChildProcess;
  private readonly lines: Interface;
  private readonly waiting: ((line: string) => void)[] = [];
  private queued = 0;
  private readonly exited: Promise<never>;

  constructor() {
    mkdirSync(join(ROOT, 'build/bench'), { recursive: true });
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', DRIVER, join(ROOT, 'bench/driver.c')]);
    this.child = spawn(DRIVER, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.child.stdout! });
    this.lines.on('line', (l) => this.waiting.shift()?.(l));
    this.exited = new Promise<never>((_, reject) =>
      this.child.once('exit', (c) => reject(new Error(`bench driver exited ${c}`))),
    );
    this.exited.catch(() => undefined); // only a run in progress cares
  }

  /** Queues an exec of argv[0] (absolute path) with exactly `env`, stdin from a file (or /dev/null). */
  exec(id: string, argv: string[], env: Record<string, string> = {}, stdinFile = '-'): void {
    const envs = Object.entries(env).map(([k, v]) => clean(`${k}=${v}`, 'env'));
    this.child.stdin!.write(
      ['X', id, stdinFile, String(envs.length), ...envs, ...argv].map((f) => clean(f, 'field')).join('\t') + '\n',
    );
    this.queued++;
  }

  /** Queues a replay of the netlink batch in `batchFile` into the netns, from the driver process. */
  replay(id: string, netnsPath: string, batchFile: string): void {
    this.child.stdin!.write(['N', id, netnsPath, batchFile].map((f) => clean(f, 'field')).join('\t') + '\n');
    this.queued++;
  }

  /** Runs the queue; resolves with each job's result by id and the wall time of the whole run. */
  async run(concurrency: number): Promise<{ results: Map<string, JobResult>; wallMs: number }> {
    const n = this.queued;
    this.queued = 0;
    const got: string[] = [];
    const done = new Promise<string>((resolve) => {
      const take = (l: string): void => {
        if (l.startsWith('D\t')) return resolve(l);
        got.push(l);
        this.waiting.push(take);
      };
      this.waiting.push(take);
    });
    this.child.stdin!.write(`G\t${concurrency}\n`);
    const end = await Promise.race([done, this.exited]);
    const results = new Map<string, JobResult>();
    for (const l of got) {
      const [id, ms, status, start, cpu] = l.split('\t');
      results.set(id!, { ms: Number(ms), status: Number(status), startMs: Number(start), cpuMs: Number(cpu) });
    }
    if (results.size !== n) throw new Error(`bench driver answered ${results.size} of ${n} jobs`);
    return { results, wallMs: Number(end.split('\t')[1]) };
  }

  close(): void {
    this.child.stdin!.end();
  }
}
