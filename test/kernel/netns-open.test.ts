// The netns path is checked through an O_PATH descriptor before anything opens it for real (issue 22):
// a FIFO or device named as CNI_NETNS is refused without the side effects of opening it. A writer
// blocked in open() on a FIFO stays blocked: nobody opened the FIFO for reading.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkPodNetns, netnsIdentity } from '../../src/kernel/index.js';
import { NetnsPool, netnsPath } from '../helpers/netns.js';

const cleanups: (() => void)[] = [];
const pool = new NetnsPool('no');
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
  pool.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A FIFO with a writer blocked opening it; `opened` tells whether the writer's open() returned. */
async function fifoWithWriter(): Promise<{ fifo: string; opened: () => boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'mcni-fifo-'));
  const fifo = join(dir, 'ns');
  const marker = join(dir, 'opened');
  execFileSync('mkfifo', [fifo]);
  const script = 'exec 3>"$0"; : > "$1"; sleep 30';
  const writer: ChildProcess = spawn('sh', ['-c', script, fifo, marker], { stdio: 'ignore' });
  cleanups.push(() => {
    writer.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await sleep(100); // the writer is now parked in open()
  return { fifo, opened: () => existsSync(marker) };
}

describe('netns path checked with O_PATH first', () => {
  const calls = [
    { name: 'netnsIdentity', call: (p: string) => netnsIdentity(p) },
    { name: 'checkPodNetns', call: (p: string) => checkPodNetns(p) },
  ];
  for (const c of calls) {
    it(`${c.name} refuses a FIFO without opening it: its blocked writer stays blocked`, async () => {
      const { fifo, opened } = await fifoWithWriter();
      expect(() => c.call(fifo)).toThrow(expect.objectContaining({ code: 'ENOTNETNS' }));
      await sleep(200);
      expect(opened()).toBe(false);
    });
  }

  it('refuses a device node as not an nsfs file, naming it', () => {
    expect(() => checkPodNetns('/dev/null')).toThrow(/\/dev\/null is not a network namespace \(not an nsfs file\)/);
  });

  it('still opens a real pod namespace', () => {
    const ns = pool.create();
    expect(() => checkPodNetns(netnsPath(ns))).not.toThrow();
    expect(netnsIdentity(netnsPath(ns)).ino).toBeGreaterThan(0n);
  });
});
