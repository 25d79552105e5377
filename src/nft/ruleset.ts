// A namespace's nf_tables ruleset as data: assembled from dump replies, compared table by table.
import { NFT_MSG, msgType } from './constants.js';
import { formatChain, formatRule } from './format.js';
import { decodeChain, decodeRule, decodeSet, decodeSetElems, decodeTable } from './messages.js';
import type { TableContents } from './model.js';
import { parseMessages } from './netlink.js';

const key = (family: string, table: string): string => `${family} ${table}`;

/**
 * Groups the replies of GETTABLE, GETCHAIN, GETSET, GETRULE (and GETSETELEM) dumps into tables.
 * Chains and rules keep the kernel's order, which is the order they run in.
 */
export function assembleRuleset(replies: Buffer[]): TableContents[] {
  const tables = new Map<string, TableContents>();
  const at = (family: string, table: string): TableContents => {
    const t = tables.get(key(family, table));
    if (!t) throw new Error(`dump mentions unknown table ${key(family, table)}`);
    return t;
  };
  const messages = replies.flatMap((r) => parseMessages(r));
  for (const m of messages) {
    if (m.type === msgType(NFT_MSG.NEWTABLE)) {
      const t = decodeTable(m);
      tables.set(key(t.family, t.name), { table: t, chains: [], sets: [], rules: [] });
    }
  }
  for (const m of messages) {
    switch (m.type) {
      case msgType(NFT_MSG.NEWCHAIN): {
        const c = decodeChain(m);
        at(c.family, c.table).chains.push(c);
        break;
      }
      case msgType(NFT_MSG.NEWSET): {
        const s = decodeSet(m);
        at(s.family, s.table).sets.push(s);
        break;
      }
      case msgType(NFT_MSG.NEWRULE): {
        const r = decodeRule(m);
        at(r.family, r.table).rules.push(r);
        break;
      }
      default:
        break;
    }
  }
  for (const m of messages) {
    if (m.type !== msgType(NFT_MSG.NEWSETELEM)) continue;
    const e = decodeSetElems(m);
    const set = [...tables.values()].flatMap((t) => t.sets).find((s) => s.table === e.table && s.name === e.set);
    set?.elements.push(...e.elements);
  }
  return [...tables.values()];
}

/** Text lines describing a table's chains and rules, per chain in rule order; stable for diffs. */
export function describeTable(t: TableContents): string[] {
  const lines = [`table ${t.table.family} ${t.table.name}`];
  for (const c of t.chains) {
    lines.push(`  chain ${formatChain(c)}`);
    for (const r of t.rules.filter((x) => x.chain === c.name)) lines.push(`    ${formatRule(r)}`);
  }
  for (const s of t.sets) {
    const elems = s.elements.map((e) => `${e.key.toString('hex')}${e.flags ? `/${e.flags}` : ''}`).sort();
    lines.push(`  set ${s.name} type ${s.keyType} len ${s.keyLen} flags ${s.flags} { ${elems.join(', ')} }`);
  }
  return lines;
}

/**
 * Compares the expected tables with what a namespace holds (only the expected tables are looked
 * at). Returns one line per difference; empty means identical.
 */
export function diffTables(expected: readonly TableContents[], actual: readonly TableContents[]): string[] {
  const diffs: string[] = [];
  for (const want of expected) {
    const name = key(want.table.family, want.table.name);
    const have = actual.find((t) => key(t.table.family, t.table.name) === name);
    if (!have) {
      diffs.push(`missing table ${name}`);
      continue;
    }
    const a = describeTable(want);
    const b = describeTable(have);
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (a[i] !== b[i]) diffs.push(`${name} line ${i}: expected ${a[i] ?? '(nothing)'}; found ${b[i] ?? '(nothing)'}`);
    }
  }
  return diffs;
}
