// Expression, message and batch encoding: every expression survives encode → decode, batches are framed right.
import { describe, expect, it } from 'vitest';
import { NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFT_MSG, msgType } from '../../src/nft/constants.js';
import { decodeExpr, encodeExpr } from '../../src/nft/expr.js';
import { decodeChain, decodeRule, decodeSet, decodeSetElems, decodeTable } from '../../src/nft/messages.js';
import type { Expr, TableContents } from '../../src/nft/model.js';
import { NLM_F_ACK, NetlinkWriter, parseAttrs, parseMessages } from '../../src/nft/netlink.js';
import { deleteTablesBatch, replaceTablesBatch } from '../../src/nft/transaction.js';
import { assembleRuleset, diffTables } from '../../src/nft/ruleset.js';

const samples: Expr[] = [
  { type: 'meta', key: 'l4proto', dreg: 1 },
  { type: 'meta_set', key: 'mark', sreg: 1 },
  { type: 'payload', base: 'network', offset: 16, len: 4, dreg: 1 },
  { type: 'cmp', sreg: 1, op: 'neq', data: Buffer.from([127, 0, 0, 1]) },
  { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: Buffer.from([255, 240, 0, 0]), xor: Buffer.alloc(4) },
  { type: 'immediate', dreg: 1, data: Buffer.from([0x3a, 0x99]) },
  { type: 'verdict', verdict: { code: 'jump', chain: 'ISTIO_OUTPUT' } },
  { type: 'verdict', verdict: { code: 'goto', chain: 'x' } },
  { type: 'verdict', verdict: { code: 'return' } },
  { type: 'verdict', verdict: { code: 'accept' } },
  { type: 'verdict', verdict: { code: 'drop' } },
  { type: 'counter', bytes: 12345678901n, packets: 7n },
  { type: 'redir', regProtoMin: 1, regProtoMax: 1, flags: 2 },
  { type: 'tproxy', family: 'ip6', regPort: 1 },
  { type: 'ct', key: 'state', dreg: 1 },
  { type: 'ct', key: 'mark', dreg: 1, direction: 0 },
  { type: 'ct_set', key: 'zone', sreg: 1 },
  { type: 'lookup', set: 'ports', sreg: 1, invert: true },
  { type: 'lookup', set: 'cidrs', sreg: 1 },
  { type: 'match', name: 'owner', rev: 1, info: Buffer.alloc(24, 7) },
  { type: 'target', name: 'REDIRECT', rev: 0, info: Buffer.alloc(24, 1) },
];

describe('expression codecs', () => {
  it.each(samples.map((e) => [e.type, e] as const))('%s survives encode → decode', (_t, e) => {
    const w = new NetlinkWriter(16);
    encodeExpr(w, e);
    const [elem] = parseAttrs(w.toBuffer());
    expect(decodeExpr(elem!)).toEqual(e);
  });

  it('rejects an expression the decoder does not know, naming it', () => {
    const w = new NetlinkWriter();
    w.beginNest(1);
    w.str(1, 'quota');
    w.endNest();
    expect(() => decodeExpr(parseAttrs(w.toBuffer())[0]!)).toThrow(/'quota'/);
  });

  it('rejects a truncated attribute stream', () => {
    expect(() => parseAttrs(Buffer.from([0x20, 0x00, 0x01, 0x00, 0x00]))).toThrow(/malformed/);
  });
});

const contents: TableContents = {
  table: { family: 'inet', name: 'meshcni-test' },
  chains: [
    {
      family: 'inet',
      table: 'meshcni-test',
      name: 'output',
      base: { hook: 'output', priority: -100, type: 'nat', policy: 'accept' },
    },
    { family: 'inet', table: 'meshcni-test', name: 'redirect' },
  ],
  sets: [
    {
      family: 'inet',
      table: 'meshcni-test',
      name: 'ports',
      flags: 0,
      keyType: 13,
      keyLen: 2,
      id: 1,
      elements: [{ key: Buffer.from([0, 22]) }, { key: Buffer.from([0x3a, 0xa0]) }],
    },
  ],
  rules: [
    {
      family: 'inet',
      table: 'meshcni-test',
      chain: 'output',
      exprs: [
        { type: 'meta', key: 'l4proto', dreg: 1 },
        { type: 'cmp', sreg: 1, op: 'eq', data: Buffer.from([6]) },
        { type: 'counter', bytes: 0n, packets: 0n },
        { type: 'verdict', verdict: { code: 'jump', chain: 'redirect' } },
      ],
    },
  ],
};

describe('replace transaction', () => {
  const batch = replaceTablesBatch([contents], 100);
  const msgs = parseMessages(batch.buffer);

  it('is framed by batch begin and end, numbered from the first sequence number', () => {
    expect(msgs[0]!.type).toBe(NFNL_MSG_BATCH_BEGIN);
    expect(msgs.at(-1)!.type).toBe(NFNL_MSG_BATCH_END);
    expect(msgs.map((m) => m.seq)).toEqual(msgs.map((_, i) => 100 + i));
    expect(batch.descriptions).toHaveLength(msgs.length);
    expect(batch.firstSeq).toBe(100);
  });

  it('ensures, deletes, then recreates the table before its chains, sets and rules', () => {
    expect(batch.descriptions).toEqual([
      'batch begin',
      'ensure table inet meshcni-test',
      'delete table inet meshcni-test',
      'add table inet meshcni-test',
      'add chain inet meshcni-test output',
      'add chain inet meshcni-test redirect',
      'add set inet meshcni-test ports',
      'add 2 elements to set inet meshcni-test ports',
      'add rule inet meshcni-test output #1',
      'batch end',
    ]);
    const types = msgs.slice(1, -1).map((m) => m.type & 0xff);
    expect(types).toEqual([
      NFT_MSG.NEWTABLE,
      NFT_MSG.DELTABLE,
      NFT_MSG.NEWTABLE,
      NFT_MSG.NEWCHAIN,
      NFT_MSG.NEWCHAIN,
      NFT_MSG.NEWSET,
      NFT_MSG.NEWSETELEM,
      NFT_MSG.NEWRULE,
    ]);
  });

  it('asks the kernel to acknowledge every inner message', () => {
    for (const m of msgs.slice(1, -1)) expect(m.flags & NLM_F_ACK).toBe(NLM_F_ACK);
  });

  it('decodes back into the same table, chains, set and rule', () => {
    const inner = msgs.slice(3, -1);
    const back = assembleRuleset([Buffer.concat(inner.map((m) => m.raw))]);
    expect(back).toHaveLength(1);
    expect(diffTables([contents], back)).toEqual([]);
    expect(decodeTable(inner[0]!)).toEqual(contents.table);
    expect(decodeChain(inner[1]!)).toEqual(contents.chains[0]);
    expect(decodeSet(inner[3]!)).toMatchObject({ name: 'ports', keyType: 13, keyLen: 2, flags: 0 });
    expect(decodeSetElems(inner[4]!).elements).toEqual(contents.sets[0]!.elements);
    expect(decodeRule(inner[5]!).exprs).toEqual(contents.rules[0]!.exprs);
    expect(inner[0]!.type).toBe(msgType(NFT_MSG.NEWTABLE));
  });

  it('reports differences rule by rule', () => {
    const changed: TableContents = {
      ...contents,
      rules: [{ ...contents.rules[0]!, exprs: contents.rules[0]!.exprs.slice(2) }],
    };
    const diffs = diffTables([contents], [changed]);
    expect(diffs).toHaveLength(1);
    expect(diffs[0]).toMatch(/expected .*meta load l4proto.*found .*\[ counter \]/);
    expect(diffTables([contents], [])).toEqual(['missing table inet meshcni-test']);
  });

  it('deletes tables without failing when they are absent (ensure + delete)', () => {
    const del = deleteTablesBatch([{ family: 'ip', name: 'nat' }]);
    expect(del.descriptions).toEqual(['batch begin', 'ensure table ip nat', 'delete table ip nat', 'batch end']);
  });
});
