// The iptables-nft encoder against the bytes iptables-nft-restore 1.8.9 itself sent for the fixture.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NFT_MSG, msgType } from '../../src/nft/constants.js';
import { encodeExpr } from '../../src/nft/expr.js';
import { decodeRule } from '../../src/nft/messages.js';
import { NetlinkWriter, parseMessages } from '../../src/nft/netlink.js';
import { encodeXtRule, encodeXtRuleset } from '../../src/nft/xtables/encode.js';
import { parseRestore } from '../../src/nft/xtables/parse.js';
import type { Expr } from '../../src/nft/model.js';

const fixtureDir = new URL('../fixtures/', import.meta.url);
const rulesText = readFileSync(new URL('istio-sidecar-default.v4.rules', fixtureDir), 'utf8');
const batch = readFileSync(new URL('istio-sidecar-default.v4.iptables-nft.batch', fixtureDir));

const exprBytes = (exprs: Expr[]): Buffer => {
  const w = new NetlinkWriter();
  for (const e of exprs) encodeExpr(w, e);
  return w.toBuffer();
};

/** The raw NFTA_RULE_EXPRESSIONS payload of each NEWRULE message in the captured batch. */
function capturedRules() {
  return parseMessages(batch)
    .filter((m) => m.type === msgType(NFT_MSG.NEWRULE))
    .map((m) => decodeRule(m));
}

describe('iptables-nft encoding of the documented Istio ruleset', () => {
  const parsed = parseRestore(rulesText, 'ip');
  const nat = parsed.tables[0]!;
  const captured = capturedRules();

  it('parses the fixture into 21 rules in one nat table', () => {
    expect(parsed.tables.map((t) => t.name)).toEqual(['nat']);
    expect(nat.chains).toEqual(['ISTIO_INBOUND', 'ISTIO_REDIRECT', 'ISTIO_IN_REDIRECT', 'ISTIO_OUTPUT']);
    expect(nat.rules).toHaveLength(21);
    expect(captured).toHaveLength(21);
  });

  nat.rules.forEach((rule, i) => {
    it(`rule ${i + 1} (${rule.chain} → ${rule.target.kind}) encodes to the same expression bytes as iptables-nft`, () => {
      const ours = encodeXtRule('ip', 'nat', rule);
      const theirs = captured[i]!;
      expect(ours.chain).toBe(theirs.chain);
      expect(ours.compat).toEqual(theirs.compat);
      // Decoded forms first (readable diff), then the exact bytes.
      expect(ours.exprs).toEqual(theirs.exprs);
      expect(exprBytes(ours.exprs).equals(exprBytes(theirs.exprs))).toBe(true);
    });
  });

  it('creates all four nat base chains with iptables-nft hooks and priorities', () => {
    const [contents] = encodeXtRuleset(parsed);
    const base = contents!.chains
      .filter((c) => c.base)
      .map((c) => [c.name, c.base!.hook, c.base!.priority, c.base!.type]);
    expect(base).toEqual([
      ['PREROUTING', 'prerouting', -100, 'nat'],
      ['INPUT', 'input', 100, 'nat'],
      ['OUTPUT', 'output', -100, 'nat'],
      ['POSTROUTING', 'postrouting', 100, 'nat'],
    ]);
  });

  it('refuses a jump to a chain the table does not declare', () => {
    const bad = parseRestore('*nat\n:A - [0:0]\n-A A -j NOWHERE\nCOMMIT\n', 'ip');
    expect(() => encodeXtRuleset(bad)).toThrow(/undeclared chain NOWHERE/);
  });

  it('refuses an address of the wrong family', () => {
    const bad = parseRestore('*nat\n-A OUTPUT -d ::1/128 -j RETURN\nCOMMIT\n', 'ip');
    expect(() => encodeXtRuleset(bad)).toThrow(/::1\/128 is not an IPv4 prefix/);
  });
});
