// The `nft` layout: Istio's native nftables backend shape (inet tables istio-proxy-nat/-mangle/-raw,
// base chains prerouting/output, chains istio-inbound, istio-output, …) with native expressions and
// counters, IPv4 and IPv6 in one inet table. Built from the same rule sequence as the iptables
// layout, so both behave identically for traffic; runs of rules that differ only in a port or a
// CIDR become one rule matching a named set (`nftSets`), so rule count does not grow with lists.
import type { Expr, NftSet, Rule, TableContents, Chain, BaseChainHook } from '../nft/model.js';
import * as n from '../nft/native.js';
import type { XtMatch, XtRule, XtRuleset, XtTableName, XtTarget } from '../nft/xtables/model.js';
import { renderRule } from '../nft/xtables/render.js';

export const NFT_TABLES: Record<XtTableName, string> = {
  nat: 'istio-proxy-nat',
  mangle: 'istio-proxy-mangle',
  raw: 'istio-proxy-raw',
  filter: 'istio-proxy-filter',
};

const BASE: Record<XtTableName, Record<string, BaseChainHook>> = {
  nat: {
    PREROUTING: { hook: 'prerouting', priority: -100, type: 'nat', policy: 'accept' },
    OUTPUT: { hook: 'output', priority: -100, type: 'nat', policy: 'accept' },
  },
  mangle: {
    PREROUTING: { hook: 'prerouting', priority: -150, type: 'filter', policy: 'accept' },
    OUTPUT: { hook: 'output', priority: -150, type: 'route', policy: 'accept' },
  },
  raw: {
    PREROUTING: { hook: 'prerouting', priority: -300, type: 'filter', policy: 'accept' },
    OUTPUT: { hook: 'output', priority: -300, type: 'filter', policy: 'accept' },
  },
  filter: {},
};

/** ISTIO_IN_REDIRECT → istio-in-redirect; PREROUTING → prerouting. */
export const nftChainName = (xt: string): string => xt.toLowerCase().replace(/_/g, '-');

/** One rule of a family, or a run of them differing only in a port / a destination CIDR. */
interface Item {
  family: 4 | 6;
  rule: XtRule;
  group?: { kind: 'dport'; values: number[] } | { kind: 'daddr'; values: string[] };
}

const isV6 = (c: string): boolean => c.includes(':');
const LOCAL = new Set(['127.0.0.1/32', '::1/128', '127.0.0.6/32', '::6/128']);
const token = (c: string): string =>
  c === '127.0.0.1/32' || c === '::1/128' ? 'LOCALHOST' : c === '127.0.0.6/32' || c === '::6/128' ? 'PASSTHROUGH' : c;

/** Rule text with the family's well-known addresses replaced, so v4 and v6 twins compare equal. */
function shape(rule: XtRule): string {
  const r = { ...rule };
  if (r.source) r.source = { ...r.source, value: LOCAL.has(r.source.value) ? '127.0.0.1/32' : r.source.value };
  if (r.destination)
    r.destination = { ...r.destination, value: LOCAL.has(r.destination.value) ? '127.0.0.1/32' : r.destination.value };
  const t = (x?: { value: string }): string => (x ? token(x.value) : '');
  return `${renderRule(r)}|${t(rule.source)}|${t(rule.destination)}`;
}

const singleDport = (r: XtRule): number | undefined => {
  const m = r.matches;
  if (!m || m.length !== 1) return undefined;
  const x = m[0]!;
  return (x.kind === 'tcp' || x.kind === 'udp') && x.dport && !x.dport.invert && !x.sport ? x.dport.value : undefined;
};

function groupKey(r: XtRule): string | null {
  if (singleDport(r) !== undefined) return `dport:${renderRule({ ...r, matches: [] })}`;
  if (r.destination && !r.destination.invert && !LOCAL.has(r.destination.value) && !r.source && !r.matches?.length) {
    return `daddr:${isV6(r.destination.value) ? 6 : 4}:${renderRule({ ...r, destination: undefined })}`;
  }
  return null;
}

/** Collapses runs (≥ 2) of same-shaped rules into set-matching items. */
function collapse(items: Item[]): Item[] {
  const out: Item[] = [];
  const keys = items.map((it) => groupKey(it.rule));
  for (let i = 0; i < items.length;) {
    const key = keys[i];
    let j = i + 1;
    while (key && j < items.length && items[j]!.rule.chain === items[i]!.rule.chain && keys[j] === key) j++;
    if (key && j - i >= 2) {
      const run = items.slice(i, j);
      // A set holds each element once; a repeated entry matches the same packets anyway.
      const group: Item['group'] = key.startsWith('dport')
        ? { kind: 'dport', values: [...new Set(run.map((x) => singleDport(x.rule)!))] }
        : { kind: 'daddr', values: [...new Set(run.map((x) => x.rule.destination!.value))] };
      out.push({ family: items[i]!.family, rule: items[i]!.rule, group });
    } else {
      for (let k = i; k < j; k++) out.push(items[k]!);
    }
    i = j;
  }
  return out;
}

/**
 * Interleaves the v4 and v6 sequences of one chain, pairing twins, in one linear pass: any
 * interleaving that keeps each family's own order is correct (each family sees exactly its rules in
 * order), so a greedy pairing is enough — no quadratic longest-common-subsequence table.
 */
function mergeFamilies(a: Item[], b: Item[]): { item: Item; twin?: Item }[] {
  const key = (x: Item): string =>
    shape(x.rule) +
    (x.group ? `|${x.group.kind}:${x.group.kind === 'dport' ? x.group.values.join(',') : 'cidrs'}` : '');
  const ka = a.map(key);
  const kb = b.map(key);
  // How many of each key are still ahead in each sequence.
  const ahead = (ks: string[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const k of ks) m.set(k, (m.get(k) ?? 0) + 1);
    return m;
  };
  const aheadA = ahead(ka);
  const aheadB = ahead(kb);
  const take = (m: Map<string, number>, k: string): void => void m.set(k, m.get(k)! - 1);
  const out: { item: Item; twin?: Item }[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && ka[i] === kb[j]) {
      take(aheadA, ka[i]!);
      take(aheadB, kb[j]!);
      out.push({ item: a[i++]!, twin: b[j++]! });
    } else if (j >= b.length || (i < a.length && !aheadB.get(ka[i]!)) || (i < a.length && aheadA.get(kb[j]!))) {
      // a[i] has no twin ahead in b, or b[j]'s twin is still ahead in a: emit a[i] first.
      take(aheadA, ka[i]!);
      out.push({ item: a[i++]! });
    } else {
      take(aheadB, kb[j]!);
      out.push({ item: b[j++]! });
    }
  }
  return out;
}

const hasAddress = (r: XtRule): boolean => Boolean(r.source || r.destination);

class TableBuilder {
  readonly chains = new Map<string, Chain>();
  readonly rules: Rule[] = [];
  readonly sets: NftSet[] = [];
  constructor(
    readonly xtTable: XtTableName,
    readonly name: string,
  ) {}

  chain(xt: string): string {
    const name = nftChainName(xt);
    if (!this.chains.has(name)) {
      const base = BASE[this.xtTable][xt];
      this.chains.set(name, { family: 'inet', table: this.name, name, ...(base ? { base } : {}) });
    }
    return name;
  }

  set(kind: 'ports' | 'v4' | 'v6', chain: string, values: (number | string)[]): NftSet {
    const name = `${chain}-${kind}-${this.sets.length + 1}`;
    const s =
      kind === 'ports'
        ? n.portSet('inet', this.name, name, values as number[], this.sets.length + 1)
        : n.prefixSet('inet', this.name, name, kind === 'v4' ? 4 : 6, values as string[], this.sets.length + 1);
    this.sets.push(s);
    return s;
  }
}

function matchExprs(m: XtMatch, family: 4 | 6 | null): Expr[] {
  switch (m.kind) {
    case 'tcp':
    case 'udp':
      return [
        ...(m.sport ? n.port('sport', m.sport.value, m.sport.invert) : []),
        ...(m.dport ? n.port('dport', m.dport.value, m.dport.invert) : []),
      ];
    case 'multiport':
      if (!m.invert) throw new Error('nft layout: positive multiport is not used by the capture rules');
      return m.ports.flatMap((p) => n.port(m.direction === 'dports' ? 'dport' : 'sport', p, true));
    case 'owner':
      return [
        ...(m.uid ? n.sk('skuid', m.uid.value, m.uid.invert) : []),
        ...(m.gid ? n.sk('skgid', m.gid.value, m.gid.invert) : []),
      ];
    case 'conntrack':
      return n.ctState(
        m.ctstate.value.map((s) => s.toLowerCase() as 'invalid' | 'established' | 'related' | 'new' | 'untracked'),
      );
    case 'mark':
      return n.markIs(m.mark.value, m.mark.invert);
    case 'connmark':
      return n.ctMarkIs(m.mark.value);
    case 'socket':
      throw new Error(`nft layout: match ${m.kind} is not used by the capture rules (family ${family})`);
  }
}

function targetExprs(t: XtTarget, family: 4 | 6 | null): Expr[] {
  switch (t.kind) {
    case 'jump':
      return [n.counter(), n.jump(nftChainName(t.chain))];
    case 'goto':
      return [n.counter(), { type: 'verdict', verdict: { code: 'goto', chain: nftChainName(t.chain) } }];
    case 'ACCEPT':
      return [n.counter(), n.accept()];
    case 'DROP':
      return [n.counter(), n.drop()];
    case 'RETURN':
      return [n.counter(), n.ret()];
    case 'REDIRECT':
      return [n.counter(), ...n.redirectTo(t.toPort)];
    case 'TPROXY':
      return [n.counter(), ...n.tproxyTo(family === 6 ? 'ip6' : 'ip', t.onPort), ...n.setMark(t.mark), n.accept()];
    case 'MARK':
      return [n.counter(), ...n.setMark(t.value)];
    case 'CONNMARK':
      return [n.counter(), ...(t.mode === 'save' ? n.saveMarkToCt() : n.restoreMarkFromCt())];
    case 'CT':
      return [n.counter(), ...n.setCtZone(t.zone)];
  }
}

/** One item → one native rule in the inet table. `pinFamily` adds `meta nfproto` when needed. */
function encodeItem(tb: TableBuilder, it: Item, pinFamily: boolean): Rule {
  const r = it.rule;
  const chain = tb.chain(r.chain);
  const fam = it.family;
  const exprs: Expr[] = [];
  const addrs = hasAddress(r) || it.group?.kind === 'daddr';
  if (pinFamily && !addrs) exprs.push(...n.nfproto(fam));
  if (r.inInterface) exprs.push(...n.ifname('iifname', r.inInterface.value, r.inInterface.invert));
  if (r.outInterface) exprs.push(...n.ifname('oifname', r.outInterface.value, r.outInterface.invert));
  if (r.source) exprs.push(...n.addr('saddr', r.source.value, { invert: r.source.invert, inet: true }));
  if (it.group?.kind === 'daddr') {
    const set = tb.set(fam === 4 ? 'v4' : 'v6', chain, it.group.values);
    exprs.push(...n.addrInSet('daddr', fam, set, { inet: true }));
  } else if (r.destination) {
    exprs.push(...n.addr('daddr', r.destination.value, { invert: r.destination.invert, inet: true }));
  }
  if (r.protocol) exprs.push(...n.l4proto(r.protocol.value, r.protocol.invert));
  if (it.group?.kind === 'dport') {
    const set = tb.set('ports', chain, it.group.values);
    exprs.push(...n.portInSet('dport', set));
  } else {
    for (const m of r.matches ?? []) exprs.push(...matchExprs(m, fam));
  }
  exprs.push(...targetExprs(r.target, fam));
  return { family: 'inet', table: tb.name, chain, exprs };
}

/**
 * Builds the nft layout from the iptables-layout rulesets. Without IPv6 rules the base chains match
 * IPv4 only, so a single-stack pod's IPv6 traffic is left alone exactly as with iptables.
 */
export function buildNftTables(v4: XtRuleset, v6: XtRuleset | null, opts: { sets: boolean }): TableContents[] {
  const out: TableContents[] = [];
  for (const xtTable of ['nat', 'mangle', 'raw'] as const) {
    const t4 = v4.tables.find((t) => t.name === xtTable);
    const t6 = v6?.tables.find((t) => t.name === xtTable);
    if (!t4 && !t6) continue;
    const tb = new TableBuilder(xtTable, NFT_TABLES[xtTable]);
    // Chains in the iptables creation order, base chains first.
    for (const c of Object.keys(BASE[xtTable])) {
      if ([...(t4?.rules ?? []), ...(t6?.rules ?? [])].some((r) => r.chain === c)) tb.chain(c);
    }
    for (const c of [...(t4?.chains ?? []), ...(t6?.chains ?? [])]) tb.chain(c);
    const chainOrder = [...tb.chains.values()].map((c) => c.name);
    const xtNames = new Map<string, string>();
    for (const r of [...(t4?.rules ?? []), ...(t6?.rules ?? [])]) xtNames.set(nftChainName(r.chain), r.chain);
    for (const chain of chainOrder) {
      const xt = xtNames.get(chain);
      if (!xt) continue;
      const items = (rules: XtRule[] | undefined, family: 4 | 6): Item[] =>
        (rules ?? []).filter((r) => r.chain === xt).map((rule) => ({ family, rule }));
      let a = items(t4?.rules, 4);
      let b = items(t6?.rules, 6);
      if (opts.sets) {
        a = collapse(a);
        b = collapse(b);
      }
      const base = Boolean(BASE[xtTable][xt]);
      for (const { item, twin } of mergeFamilies(a, b)) {
        if (twin && !hasAddress(item.rule) && item.group?.kind !== 'daddr') {
          tb.rules.push(encodeItem(tb, item, false)); // the same rule serves both families
        } else {
          // Family-specific rules are pinned to their family. In a single-stack pod only the base
          // chains need pinning (to IPv4): the user chains are reachable from there alone.
          tb.rules.push(encodeItem(tb, item, v6 ? true : base));
          if (twin) tb.rules.push(encodeItem(tb, twin, true));
        }
      }
    }
    out.push({
      table: { family: 'inet', name: tb.name },
      chains: [...tb.chains.values()],
      sets: tb.sets,
      rules: tb.rules,
    });
  }
  return out;
}
