// The kernel is the judge: our transaction and iptables-nft-restore of the same text must read back
// identically through iptables-nft-save, nft -j and our own decoder. Root, real netns.
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { applyTables, readTables, TransactionError } from '../../src/nft/apply.js';
import { diffTables } from '../../src/nft/ruleset.js';
import { encodeXtRuleset } from '../../src/nft/xtables/encode.js';
import { parseRestore } from '../../src/nft/xtables/parse.js';
import type { TableContents } from '../../src/nft/model.js';
import { NetnsPool, inNetns, netnsPath, nftJson, normaliseSave } from '../helpers/netns.js';

const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const pool = new NetnsPool('o');
afterEach(() => pool.cleanup());
afterAll(() => pool.cleanup());

describe('the documented Istio ruleset, applied by meshcni vs iptables-nft-restore', () => {
  it('reads back identically through iptables-nft-save -t nat', async () => {
    const ours = pool.create();
    const theirs = pool.create();
    await applyTables(netnsPath(ours), encodeXtRuleset(parseRestore(fixture, 'ip')));
    inNetns(theirs, 'iptables-nft-restore', [], fixture);
    const a = normaliseSave(inNetns(ours, 'iptables-nft-save', ['-t', 'nat']));
    const b = normaliseSave(inNetns(theirs, 'iptables-nft-save', ['-t', 'nat']));
    expect(a).toBe(b);
    expect(a).toContain('-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT');
  });

  it('reads back identically through nft -j list ruleset and through our own decoder', async () => {
    const ours = pool.create();
    const theirs = pool.create();
    const expected = encodeXtRuleset(parseRestore(fixture, 'ip'));
    await applyTables(netnsPath(ours), expected);
    inNetns(theirs, 'iptables-nft-restore', [], fixture);
    expect(nftJson(ours)).toEqual(nftJson(theirs));
    expect(diffTables(expected, await readTables(netnsPath(theirs)))).toEqual([]);
    expect(diffTables(expected, await readTables(netnsPath(ours)))).toEqual([]);
  });

  it('lists the four Istio chains with iptables -t nat -L -n -v as the fixture has them', async () => {
    const ns = pool.create();
    await applyTables(netnsPath(ns), encodeXtRuleset(parseRestore(fixture, 'ip')));
    const listing = inNetns(ns, 'iptables', ['-t', 'nat', '-L', '-n', '-v']);
    for (const chain of ['ISTIO_INBOUND', 'ISTIO_REDIRECT', 'ISTIO_IN_REDIRECT', 'ISTIO_OUTPUT']) {
      expect(listing).toMatch(new RegExp(`^Chain ${chain} \\(\\d+ references\\)`, 'm'));
    }
    expect(listing).toMatch(/REDIRECT\s+6\s+--\s+\*\s+\*\s+0\.0\.0\.0\/0\s+0\.0\.0\.0\/0\s+redir ports 15001/);
    expect(listing).toMatch(/RETURN\s+0\s+--\s+\*\s+\*\s+0\.0\.0\.0\/0\s+192\.168\.0\.1/);
    // Reading back through the oracle's own tool is the point; compare with its listing of the fixture too.
    const theirs = pool.create();
    inNetns(theirs, 'iptables-nft-restore', [], fixture);
    expect(listing).toBe(inNetns(theirs, 'iptables', ['-t', 'nat', '-L', '-n', '-v']));
  });

  it('is idempotent: applying twice leaves exactly one copy of every rule', async () => {
    const ns = pool.create();
    const expected = encodeXtRuleset(parseRestore(fixture, 'ip'));
    await applyTables(netnsPath(ns), expected);
    await applyTables(netnsPath(ns), expected);
    expect(diffTables(expected, await readTables(netnsPath(ns)))).toEqual([]);
  });
});

describe('a transaction the kernel rejects', () => {
  it('names the failing message and errno, and leaves the namespace exactly as it was', async () => {
    const ns = pool.create();
    // A prior state that must survive: the fixture, applied by the oracle.
    inNetns(ns, 'iptables-nft-restore', [], fixture);
    const before = nftJson(ns);
    const good = encodeXtRuleset(parseRestore('*nat\n:X - [0:0]\n-A X -j RETURN\nCOMMIT\n', 'ip'));
    // The last message jumps to a chain that does not exist: the kernel fails it late in the batch.
    const bad: TableContents[] = [
      ...good,
      {
        table: { family: 'ip6', name: 'nat' },
        chains: [{ family: 'ip6', table: 'nat', name: 'Y' }],
        sets: [],
        rules: [
          {
            family: 'ip6',
            table: 'nat',
            chain: 'Y',
            exprs: [{ type: 'verdict', verdict: { code: 'jump', chain: 'MISSING' } }],
          },
        ],
      },
    ];
    const err = await applyTables(netnsPath(ns), bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransactionError);
    const te = err as TransactionError;
    expect(te.code).toBe('ENOENT');
    expect(te.description).toBe('add rule ip6 nat Y #1');
    expect(te.message).toMatch(/message #\d+ \(add rule ip6 nat Y #1\): ENOENT/);
    expect(nftJson(ns)).toEqual(before);
  });
});
