// The golden suite: every case's rules as meshcni computes them must equal the hand-written
// expectation, and — as root — meshcni's encoding applied in a real netns must read back exactly as
// iptables-nft-restore of the expected text does (the oracle).
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG } from '../../src/capture/config.js';
import { planRules } from '../../src/capture/plan.js';
import { applyTables } from '../../src/nft/apply.js';
import { renderRestore } from '../../src/nft/xtables/render.js';
import { NetnsPool, inNetns, netnsPath, normaliseSave } from '../helpers/netns.js';
import { GOLDEN, podObject } from './golden.js';

const captured = GOLDEN.filter((c) => c.v4 !== undefined);
const pool = new NetnsPool('g');
afterEach(() => pool.cleanup());
afterAll(() => pool.cleanup());

describe('golden cases (rules as text)', () => {
  it('has at least 30 cases', () => expect(GOLDEN.length).toBeGreaterThanOrEqual(30));

  it.each(GOLDEN.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    if (c.error) {
      expect(() => planRules(podObject(c), DEFAULT_CAPTURE_CONFIG)).toThrow(c.error);
      return;
    }
    const plan = planRules(podObject(c), DEFAULT_CAPTURE_CONFIG);
    if (c.skip) {
      expect(plan.capture).toBe(false);
      if (!plan.capture) expect(plan.reason).toMatch(c.skip);
      return;
    }
    expect(plan.capture).toBe(true);
    if (!plan.capture) return;
    expect(renderRestore(plan.iptables.v4)).toBe(c.v4);
    expect(plan.iptables.v6 ? renderRestore(plan.iptables.v6) : null).toBe(c.v6 ?? null);
  });
});

describe('golden cases in the kernel: meshcni vs iptables-nft-restore', () => {
  it.each(captured.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const plan = planRules(podObject(c), DEFAULT_CAPTURE_CONFIG);
    if (!plan.capture) throw new Error('expected a captured pod');
    const ours = pool.create();
    const theirs = pool.create();
    // One transaction for IPv4 and IPv6, exactly what the agent sends.
    await applyTables(netnsPath(ours), plan.tables);
    inNetns(theirs, 'iptables-nft-restore', [], c.v4!);
    expect(normaliseSave(inNetns(ours, 'iptables-nft-save', []))).toBe(
      normaliseSave(inNetns(theirs, 'iptables-nft-save', [])),
    );
    if (c.v6) inNetns(theirs, 'ip6tables-nft-restore', [], c.v6);
    expect(normaliseSave(inNetns(ours, 'ip6tables-nft-save', []))).toBe(
      normaliseSave(inNetns(theirs, 'ip6tables-nft-save', [])),
    );
  });
});
