// A promise rejection nobody handles is logged loudly and the agent keeps serving; Node's default
// would end the process and every pod's CNI with it. The built agent in a child process.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../e2e/helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('unhandled promise rejections', () => {
  it('are logged as a bug with the error, and the agent stays up', () => {
    const dir = mkdtempSync(join(tmpdir(), `mcni-unh-${process.pid}-`));
    dirs.push(dir);
    const script = `
      import { pino } from 'pino';
      import { Agent } from ${JSON.stringify(join(ROOT, 'dist/agent/agent.js'))};
      import { parseSettings } from ${JSON.stringify(join(ROOT, 'dist/agent/config.js'))};
      const s = parseSettings({ podsDir: ${JSON.stringify(dir)}, socketPath: ${JSON.stringify(join(dir, 'run/cni.sock'))}, stateDir: ${JSON.stringify(join(dir, 'state'))}, metricsAddress: '', reconcileIntervalSeconds: 0 }, 'test');
      const agent = new Agent(s, pino());
      await agent.start();
      Promise.reject(new Error('nobody awaited me'));
      await new Promise((r) => setTimeout(r, 300));
      console.log(JSON.stringify({ alive: agent.isReady() }));
      await agent.stop();
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(0);
    const lines = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const bug = lines.find((l) => String(l.msg).includes('unhandled promise rejection'));
    expect(bug).toMatchObject({ level: 50, err: { type: 'Error', message: 'nobody awaited me' } });
    expect(lines).toContainEqual({ alive: true });
  });
});
