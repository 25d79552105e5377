// nf_tables messages: tables, chains, rules, sets and set elements, to bytes and back from dumps.
import {
  CHAIN,
  FAMILY,
  HOOK,
  HOOK_ATTR,
  NFT_MSG,
  RULE,
  RULE_COMPAT,
  SET,
  SET_ELEM,
  SET_ELEM_LIST,
  TABLE,
  DATA,
  msgType,
  nameOf,
} from './constants.js';
import { decodeExpr, encodeExpr } from './expr.js';
import type { Chain, NftSet, Rule, SetElement, Table } from './model.js';
import {
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  attrMap,
  parseAttrs,
  readStr,
  readU32,
  readU64,
  type Attr,
  type NetlinkMessage,
  type NetlinkWriter,
} from './netlink.js';

const NF_DROP = 0;
const NF_ACCEPT = 1;
const NEW_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;

/** `exclusive` fails the message with EEXIST when the table is already there. */
export function writeNewTable(w: NetlinkWriter, seq: number, t: Table, exclusive = false): void {
  w.beginMessage(msgType(NFT_MSG.NEWTABLE), NEW_FLAGS | (exclusive ? NLM_F_EXCL : 0), seq, FAMILY[t.family]);
  w.str(TABLE.NAME, t.name);
  if (t.flags !== undefined) w.u32(TABLE.FLAGS, t.flags);
  w.endMessage();
}

export function writeDelTable(w: NetlinkWriter, seq: number, t: Table): void {
  w.beginMessage(msgType(NFT_MSG.DELTABLE), NLM_F_REQUEST | NLM_F_ACK, seq, FAMILY[t.family]);
  w.str(TABLE.NAME, t.name);
  w.endMessage();
}

export function writeNewChain(w: NetlinkWriter, seq: number, c: Chain): void {
  w.beginMessage(msgType(NFT_MSG.NEWCHAIN), NEW_FLAGS, seq, FAMILY[c.family]);
  w.str(CHAIN.TABLE, c.table);
  w.str(CHAIN.NAME, c.name);
  if (c.base) {
    w.beginNest(CHAIN.HOOK);
    w.u32(HOOK_ATTR.HOOKNUM, HOOK[c.base.hook]);
    w.u32(HOOK_ATTR.PRIORITY, c.base.priority);
    w.endNest();
    w.u32(CHAIN.POLICY, c.base.policy === 'drop' ? NF_DROP : NF_ACCEPT);
    w.str(CHAIN.TYPE, c.base.type);
  }
  w.endMessage();
}

export function writeNewRule(w: NetlinkWriter, seq: number, r: Rule): void {
  w.beginMessage(msgType(NFT_MSG.NEWRULE), NEW_FLAGS | NLM_F_APPEND, seq, FAMILY[r.family]);
  w.str(RULE.TABLE, r.table);
  w.str(RULE.CHAIN, r.chain);
  w.beginNest(RULE.EXPRESSIONS);
  for (const e of r.exprs) encodeExpr(w, e);
  w.endNest();
  if (r.compat) {
    w.beginNest(RULE.COMPAT);
    w.u32(RULE_COMPAT.PROTO, r.compat.proto);
    w.u32(RULE_COMPAT.FLAGS, r.compat.flags);
    w.endNest();
  }
  if (r.userdata) w.attr(RULE.USERDATA, r.userdata);
  w.endMessage();
}

export function writeNewSet(w: NetlinkWriter, seq: number, s: NftSet): void {
  w.beginMessage(msgType(NFT_MSG.NEWSET), NEW_FLAGS, seq, FAMILY[s.family]);
  w.str(SET.TABLE, s.table);
  w.str(SET.NAME, s.name);
  w.u32(SET.FLAGS, s.flags);
  w.u32(SET.KEY_TYPE, s.keyType);
  w.u32(SET.KEY_LEN, s.keyLen);
  if (s.id !== undefined) w.u32(SET.ID, s.id);
  w.endMessage();
}

/**
 * Elements per NEWSETELEM message. The element list is one attribute, and nla_len is 16 bits: at
 * most 36 bytes per element (IPv6 key + flags) × 1024 stays far below 65,535 bytes.
 */
export const SET_ELEMS_PER_MESSAGE = 1024;

/** NEWSETELEM for `elements` (default: all of the set's; callers chunk by SET_ELEMS_PER_MESSAGE). */
export function writeNewSetElems(
  w: NetlinkWriter,
  seq: number,
  s: NftSet,
  elements: readonly NftSet['elements'][number][] = s.elements,
): void {
  w.beginMessage(msgType(NFT_MSG.NEWSETELEM), NEW_FLAGS, seq, FAMILY[s.family]);
  w.str(SET_ELEM_LIST.TABLE, s.table);
  w.str(SET_ELEM_LIST.SET, s.name);
  if (s.id !== undefined) w.u32(SET_ELEM_LIST.SET_ID, s.id);
  w.beginNest(SET_ELEM_LIST.ELEMENTS);
  for (const el of elements) {
    w.beginNest(1 /* NFTA_LIST_ELEM */);
    w.beginNest(SET_ELEM.KEY);
    w.attr(DATA.VALUE, el.key);
    w.endNest();
    if (el.flags) w.u32(SET_ELEM.FLAGS, el.flags);
    w.endNest();
  }
  w.endNest();
  w.endMessage();
}

/** A dump request for all objects of one kind in every family (GETSETELEM needs table and set). */
export function writeDumpRequest(
  w: NetlinkWriter,
  kind: 'GETTABLE' | 'GETCHAIN' | 'GETRULE' | 'GETSET' | 'GETSETELEM',
  seq: number,
  family: Table['family'] | 'unspec' = 'unspec',
  set?: { table: string; name: string },
): void {
  w.beginMessage(msgType(NFT_MSG[kind]), NLM_F_REQUEST | 0x300 /* NLM_F_DUMP */, seq, FAMILY[family]);
  if (set) {
    w.str(SET_ELEM_LIST.TABLE, set.table);
    w.str(SET_ELEM_LIST.SET, set.name);
  }
  w.endMessage();
}

// ---- decoding (dump replies) ----

const familyOf = (m: NetlinkMessage): Table['family'] => {
  const f = nameOf(FAMILY, m.family, 'nfproto family');
  if (f === 'unspec') throw new Error('nf_tables object with family unspec');
  return f;
};

const str = (a: Map<number, Attr>, t: number, what: string): string => {
  const v = a.get(t);
  if (!v) throw new Error(`${what} without attribute ${t}`);
  return readStr(v);
};

export function decodeTable(m: NetlinkMessage): Table {
  const a = attrMap(m.attrs);
  const t: Table = { family: familyOf(m), name: str(a, TABLE.NAME, 'table') };
  if (a.has(TABLE.FLAGS)) t.flags = readU32(a.get(TABLE.FLAGS)!);
  if (a.has(TABLE.HANDLE)) t.handle = readU64(a.get(TABLE.HANDLE)!);
  return t;
}

export function decodeChain(m: NetlinkMessage): Chain {
  const a = attrMap(m.attrs);
  const c: Chain = { family: familyOf(m), table: str(a, CHAIN.TABLE, 'chain'), name: str(a, CHAIN.NAME, 'chain') };
  if (a.has(CHAIN.HANDLE)) c.handle = readU64(a.get(CHAIN.HANDLE)!);
  const hook = a.get(CHAIN.HOOK);
  if (hook) {
    const h = attrMap(hook.value);
    const hooknum = h.get(HOOK_ATTR.HOOKNUM);
    const prio = h.get(HOOK_ATTR.PRIORITY);
    if (!hooknum || !prio) throw new Error(`base chain ${c.name} without hook number or priority`);
    c.base = {
      hook: nameOf(HOOK, readU32(hooknum), 'hook'),
      priority: prio.value.readInt32BE(0),
      type: str(a, CHAIN.TYPE, 'base chain') as 'filter' | 'nat' | 'route',
      policy: a.has(CHAIN.POLICY) && readU32(a.get(CHAIN.POLICY)!) === NF_DROP ? 'drop' : 'accept',
    };
  }
  return c;
}

export function decodeRule(m: NetlinkMessage): Rule {
  const a = attrMap(m.attrs);
  const r: Rule = {
    family: familyOf(m),
    table: str(a, RULE.TABLE, 'rule'),
    chain: str(a, RULE.CHAIN, 'rule'),
    exprs: parseAttrs(a.get(RULE.EXPRESSIONS)?.value ?? Buffer.alloc(0)).map(decodeExpr),
  };
  if (a.has(RULE.HANDLE)) r.handle = readU64(a.get(RULE.HANDLE)!);
  const compat = a.get(RULE.COMPAT);
  if (compat) {
    const c = attrMap(compat.value);
    r.compat = {
      proto: c.has(RULE_COMPAT.PROTO) ? readU32(c.get(RULE_COMPAT.PROTO)!) : 0,
      flags: c.has(RULE_COMPAT.FLAGS) ? readU32(c.get(RULE_COMPAT.FLAGS)!) : 0,
    };
  }
  if (a.has(RULE.USERDATA)) r.userdata = Buffer.from(a.get(RULE.USERDATA)!.value);
  return r;
}

export function decodeSet(m: NetlinkMessage): NftSet {
  const a = attrMap(m.attrs);
  const s: NftSet = {
    family: familyOf(m),
    table: str(a, SET.TABLE, 'set'),
    name: str(a, SET.NAME, 'set'),
    flags: a.has(SET.FLAGS) ? readU32(a.get(SET.FLAGS)!) : 0,
    keyType: a.has(SET.KEY_TYPE) ? readU32(a.get(SET.KEY_TYPE)!) : 0,
    keyLen: a.has(SET.KEY_LEN) ? readU32(a.get(SET.KEY_LEN)!) : 0,
    elements: [],
  };
  if (a.has(SET.HANDLE)) s.handle = readU64(a.get(SET.HANDLE)!);
  return s;
}

export function decodeSetElems(m: NetlinkMessage): { table: string; set: string; elements: SetElement[] } {
  const a = attrMap(m.attrs);
  const elements: SetElement[] = [];
  for (const el of parseAttrs(a.get(SET_ELEM_LIST.ELEMENTS)?.value ?? Buffer.alloc(0))) {
    const e = attrMap(el.value);
    const key = e.get(SET_ELEM.KEY);
    const value = key ? attrMap(key.value).get(DATA.VALUE) : undefined;
    if (!value) throw new Error('set element without key');
    const out: SetElement = { key: Buffer.from(value.value) };
    if (e.has(SET_ELEM.FLAGS)) out.flags = readU32(e.get(SET_ELEM.FLAGS)!);
    elements.push(out);
  }
  return {
    table: str(a, SET_ELEM_LIST.TABLE, 'set elements'),
    set: str(a, SET_ELEM_LIST.SET, 'set elements'),
    elements,
  };
}
