// Warm start (behaviour only; its timing is in bench/first-add.ts): the agent runs the ADD hot path
// into a throwaway netns before it is ready, leaves nothing behind, and can be turned off. Root.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { World } from './helpers.js';

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.cleanup();
});

/** Names of the live processes whose parent is pid (from /proc/<pid>/stat). */
function childrenOf(pid: number): string[] {
  const out: string[] = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) out.push(stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
    } catch {
      /* exited */
    }
  }
  return out;
}

describe('warm start', () => {
  it('plans varied pods, then ADDs and DELs a representative pod through the CNI handler in a throwaway netns, before reporting ready', async () => {
    const w = new World();
    worlds.push(w);
    await w.startAgent();
    const lines = w.agentLog
      .split('\n')
      .filter((l) => l.includes('hot path warmed') || l.includes('meshcni agent ready'));
    expect(lines[0]).toContain('"steps":["plan","add","del","read"]');
    expect(lines[1]).toContain('meshcni agent ready'); // warmed first, ready after
    // Invisible to operators: no log line of the warm-up's own ADD, no record left, nothing recorded.
    expect(w.agentLog).not.toContain('meshcni-warm-start"');
    expect(existsSync(join(w.stateDir, 'warm-start'))).toBe(false);
    expect(readdirSync(join(w.stateDir, 'pods'))).toEqual([]);
    // The throwaway netns's holder is gone: no `unshare` child of the agent remains.
    expect(childrenOf(w.agent!.pid!)).toEqual([]);
  });

  it('skips the warm-up when warmStart is false', async () => {
    const w = new World({ warmStart: false });
    worlds.push(w);
    await w.startAgent();
    expect(w.agentLog).not.toContain('hot path warmed');
  });
});
