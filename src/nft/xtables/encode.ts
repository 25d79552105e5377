// iptables rules (data) → nf_tables tables, chains and rules, encoded the way iptables-nft 1.8.9
// does, so that `iptables-save` inside the namespace reads them back as the same rules.
import { IPPROTO, NFT_REG_1, NFT_RULE_COMPAT_F_INV, type HookName } from '../constants.js';
import { parsePrefix } from '../addr.js';
import type { BaseChainHook, Chain, Expr, Rule, TableContents } from '../model.js';
import {
  connmarkMatch,
  connmarkTarget,
  conntrackStateMatch,
  ctZoneTarget,
  markTarget,
  multiportMatch,
  ownerMatch,
  redirectTarget,
  socketMatch,
  tproxyTarget,
} from './compat.js';
import {
  BUILTIN_CHAINS,
  type Negatable,
  type XtFamily,
  type XtMatch,
  type XtRule,
  type XtRuleset,
  type XtTableName,
  type XtTarget,
} from './model.js';

const R = NFT_REG_1;

/** Hook, priority and type of each built-in chain, as iptables-nft registers them. */
const BUILTIN_HOOKS: Record<XtTableName, { priority: number; type: (chain: string) => BaseChainHook['type'] }> = {
  nat: { priority: 0, type: () => 'nat' }, // priority per chain below
  mangle: { priority: -150, type: (c) => (c === 'OUTPUT' ? 'route' : 'filter') },
  raw: { priority: -300, type: () => 'filter' },
  filter: { priority: 0, type: () => 'filter' },
};

function builtinChain(family: XtFamily, table: XtTableName, name: string): Chain {
  const hook = name.toLowerCase() as HookName;
  const priority =
    table === 'nat' ? (name === 'PREROUTING' || name === 'OUTPUT' ? -100 : 100) : BUILTIN_HOOKS[table].priority;
  return { family, table, name, base: { hook, priority, type: BUILTIN_HOOKS[table].type(name), policy: 'accept' } };
}

const op = (invert?: boolean): 'eq' | 'neq' => (invert ? 'neq' : 'eq');

function u16be(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

function ifaceExprs(key: 'iifname' | 'oifname', v: Negatable<string>): Expr[] {
  const wildcard = v.value.endsWith('+');
  const name = wildcard ? v.value.slice(0, -1) : v.value;
  if (name.length === 0) return []; // `-i +` matches every interface
  const data = wildcard ? Buffer.from(name) : Buffer.concat([Buffer.from(name), Buffer.alloc(1)]);
  return [
    { type: 'meta', key, dreg: R },
    { type: 'cmp', sreg: R, op: op(v.invert), data },
  ];
}

/** iptables-nft's add_addr: load only the whole-byte prefix, or the full address plus a mask. */
function addrExprs(family: XtFamily, which: 'source' | 'destination', v: Negatable<string>): Expr[] {
  const p = parsePrefix(v.value);
  if ((p.family === 4) !== (family === 'ip')) {
    throw new Error(`${which} ${v.value} is not an ${family === 'ip' ? 'IPv4' : 'IPv6'} prefix`);
  }
  if (p.bits === 0 && !v.invert) return [];
  const full = p.addr.length;
  const offset = family === 'ip' ? (which === 'source' ? 12 : 16) : which === 'source' ? 8 : 24;
  const aligned = p.bits % 8 === 0;
  const len = aligned ? p.bits / 8 : full;
  const exprs: Expr[] = [{ type: 'payload', base: 'network', offset, len, dreg: R }];
  if (!aligned) exprs.push({ type: 'bitwise', sreg: R, dreg: R, len, mask: p.mask, xor: Buffer.alloc(len) });
  exprs.push({ type: 'cmp', sreg: R, op: op(v.invert), data: p.addr.subarray(0, len) });
  return exprs;
}

function portExprs(offset: number, v: Negatable<number>): Expr[] {
  return [
    { type: 'payload', base: 'transport', offset, len: 2, dreg: R },
    { type: 'cmp', sreg: R, op: op(v.invert), data: u16be(v.value) },
  ];
}

function markExprs(key: 'mark', v: Negatable<number>, mask: number | undefined): Expr[] {
  const m = mask ?? 0xffffffff;
  const exprs: Expr[] = [{ type: 'meta', key, dreg: R }];
  if (m >>> 0 !== 0xffffffff)
    exprs.push({ type: 'bitwise', sreg: R, dreg: R, len: 4, mask: u32le(m), xor: Buffer.alloc(4) });
  exprs.push({ type: 'cmp', sreg: R, op: op(v.invert), data: u32le((v.value & m) >>> 0) });
  return exprs;
}

function matchExprs(m: XtMatch): Expr[] {
  switch (m.kind) {
    case 'tcp':
    case 'udp':
      return [...(m.sport ? portExprs(0, m.sport) : []), ...(m.dport ? portExprs(2, m.dport) : [])];
    case 'multiport':
      return [multiportMatch(m.direction, m.ports, m.invert ?? false)];
    case 'owner':
      return [ownerMatch(m.uid, m.gid)];
    case 'conntrack':
      return [conntrackStateMatch(m.ctstate.value, m.ctstate.invert ?? false)];
    case 'mark':
      return markExprs('mark', m.mark, m.mask);
    case 'connmark':
      return [connmarkMatch(m.mark.value, m.mask ?? 0xffffffff, m.mark.invert ?? false)];
    case 'socket':
      return [socketMatch(m.transparent ?? false)];
  }
}

function targetExprs(family: XtFamily, t: XtTarget): Expr[] {
  switch (t.kind) {
    case 'jump':
    case 'goto':
      return [{ type: 'verdict', verdict: { code: t.kind, chain: t.chain } }];
    case 'ACCEPT':
      return [{ type: 'verdict', verdict: { code: 'accept' } }];
    case 'DROP':
      return [{ type: 'verdict', verdict: { code: 'drop' } }];
    case 'RETURN':
      return [{ type: 'verdict', verdict: { code: 'return' } }];
    case 'REDIRECT':
      return [redirectTarget(family, t.toPort)];
    case 'TPROXY':
      return [tproxyTarget(family, t.onPort, t.onIp, t.mark, t.mask)];
    case 'MARK':
      return [markTarget(t.value, t.mask)];
    case 'CONNMARK':
      return [connmarkTarget(t.mode, t.nfmask, t.ctmask)];
    case 'CT':
      return [ctZoneTarget(t.zone)];
  }
}

/** One iptables rule as the nf_tables rule iptables-nft would create for it. */
export function encodeXtRule(family: XtFamily, table: XtTableName, r: XtRule): Rule {
  const exprs: Expr[] = [];
  if (r.inInterface) exprs.push(...ifaceExprs('iifname', r.inInterface));
  if (r.outInterface) exprs.push(...ifaceExprs('oifname', r.outInterface));
  if (r.protocol) {
    exprs.push({ type: 'meta', key: 'l4proto', dreg: R });
    exprs.push({ type: 'cmp', sreg: R, op: op(r.protocol.invert), data: Buffer.from([IPPROTO[r.protocol.value]]) });
  }
  if (r.source) exprs.push(...addrExprs(family, 'source', r.source));
  if (r.destination) exprs.push(...addrExprs(family, 'destination', r.destination));
  for (const m of r.matches ?? []) exprs.push(...matchExprs(m));
  exprs.push({ type: 'counter', bytes: 0n, packets: 0n });
  exprs.push(...targetExprs(family, r.target));
  return {
    family,
    table,
    chain: r.chain,
    exprs,
    compat: {
      proto: r.protocol ? IPPROTO[r.protocol.value] : 0,
      flags: r.protocol?.invert ? NFT_RULE_COMPAT_F_INV : 0,
    },
  };
}

/** A whole iptables ruleset as nf_tables table contents (built-in + user chains, rules in order). */
export function encodeXtRuleset(rs: XtRuleset): TableContents[] {
  return rs.tables.map((t) => {
    const declared = new Set([...BUILTIN_CHAINS[t.name], ...t.chains]);
    for (const r of t.rules) {
      if (!declared.has(r.chain)) throw new Error(`rule in undeclared chain ${t.name}/${r.chain}`);
      const target = r.target;
      if ((target.kind === 'jump' || target.kind === 'goto') && !declared.has(target.chain)) {
        throw new Error(`rule in ${t.name}/${r.chain} jumps to undeclared chain ${target.chain}`);
      }
    }
    return {
      table: { family: rs.family, name: t.name },
      chains: [
        ...BUILTIN_CHAINS[t.name].map((c) => builtinChain(rs.family, t.name, c)),
        ...t.chains.map((c): Chain => ({ family: rs.family, table: t.name, name: c })),
      ],
      sets: [],
      rules: t.rules.map((r) => encodeXtRule(rs.family, t.name, r)),
    };
  });
}
