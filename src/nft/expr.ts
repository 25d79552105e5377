// Each nf_tables expression as a small codec: data → netlink attributes and back.
import {
  CMP_OP,
  CT_KEY,
  DATA,
  EXPR,
  FAMILY,
  META_KEY,
  PAYLOAD_BASE,
  VERDICT_ATTR,
  VERDICT_CODE,
  nameOf,
} from './constants.js';
import type { Expr, Verdict } from './model.js';
import { attrMap, readStr, readU32, readU64, type Attr, type NetlinkWriter } from './netlink.js';

type ExprOf<T extends Expr['type']> = Extract<Expr, { type: T }>;

interface ExprCodec<T extends Expr['type']> {
  /** The kernel's expression name (NFTA_EXPR_NAME). */
  kernelName: string;
  encode(w: NetlinkWriter, e: ExprOf<T>): void;
  decode(a: Map<number, Attr>): ExprOf<T>;
}

const need = (a: Map<number, Attr>, type: number, expr: string): Attr => {
  const v = a.get(type);
  if (!v) throw new Error(`${expr} expression without attribute ${type}`);
  return v;
};

function writeValue(w: NetlinkWriter, attrType: number, data: Buffer): void {
  w.beginNest(attrType);
  w.attr(DATA.VALUE, data);
  w.endNest();
}

function readValue(a: Attr): Buffer {
  const v = attrMap(a.value).get(DATA.VALUE);
  if (!v) throw new Error('nested data without NFTA_DATA_VALUE');
  return Buffer.from(v.value);
}

function writeVerdict(w: NetlinkWriter, v: Verdict): void {
  w.beginNest(2 /* NFTA_IMMEDIATE_DATA */);
  w.beginNest(DATA.VERDICT);
  w.u32(VERDICT_ATTR.CODE, VERDICT_CODE[v.code]);
  if (v.code === 'jump' || v.code === 'goto') w.str(VERDICT_ATTR.CHAIN, v.chain);
  w.endNest();
  w.endNest();
}

function readVerdict(a: Attr): Verdict {
  const m = attrMap(a.value);
  const code = nameOf(VERDICT_CODE, need(m, VERDICT_ATTR.CODE, 'verdict').value.readInt32BE(0), 'verdict code');
  if (code === 'jump' || code === 'goto') return { code, chain: readStr(need(m, VERDICT_ATTR.CHAIN, 'verdict')) };
  return { code };
}

const meta: ExprCodec<'meta'> = {
  kernelName: 'meta',
  encode(w, e) {
    w.u32(2, META_KEY[e.key]);
    w.u32(1, e.dreg);
  },
  decode: (a) => ({
    type: 'meta',
    key: nameOf(META_KEY, readU32(need(a, 2, 'meta')), 'meta key'),
    dreg: readU32(need(a, 1, 'meta')),
  }),
};

const metaSet: ExprCodec<'meta_set'> = {
  kernelName: 'meta',
  encode(w, e) {
    w.u32(2, META_KEY[e.key]);
    w.u32(3, e.sreg);
  },
  decode: (a) => ({
    type: 'meta_set',
    key: nameOf(META_KEY, readU32(need(a, 2, 'meta')), 'meta key'),
    sreg: readU32(need(a, 3, 'meta')),
  }),
};

const payload: ExprCodec<'payload'> = {
  kernelName: 'payload',
  encode(w, e) {
    w.u32(1, e.dreg);
    w.u32(2, PAYLOAD_BASE[e.base]);
    w.u32(3, e.offset);
    w.u32(4, e.len);
  },
  decode: (a) => ({
    type: 'payload',
    dreg: readU32(need(a, 1, 'payload')),
    base: nameOf(PAYLOAD_BASE, readU32(need(a, 2, 'payload')), 'payload base'),
    offset: readU32(need(a, 3, 'payload')),
    len: readU32(need(a, 4, 'payload')),
  }),
};

const cmp: ExprCodec<'cmp'> = {
  kernelName: 'cmp',
  encode(w, e) {
    w.u32(1, e.sreg);
    w.u32(2, CMP_OP[e.op]);
    writeValue(w, 3, e.data);
  },
  decode: (a) => ({
    type: 'cmp',
    sreg: readU32(need(a, 1, 'cmp')),
    op: nameOf(CMP_OP, readU32(need(a, 2, 'cmp')), 'cmp op'),
    data: readValue(need(a, 3, 'cmp')),
  }),
};

const bitwise: ExprCodec<'bitwise'> = {
  kernelName: 'bitwise',
  encode(w, e) {
    w.u32(1, e.sreg);
    w.u32(2, e.dreg);
    w.u32(3, e.len);
    writeValue(w, 4, e.mask);
    writeValue(w, 5, e.xor);
  },
  decode: (a) => ({
    type: 'bitwise',
    sreg: readU32(need(a, 1, 'bitwise')),
    dreg: readU32(need(a, 2, 'bitwise')),
    len: readU32(need(a, 3, 'bitwise')),
    mask: readValue(need(a, 4, 'bitwise')),
    xor: readValue(need(a, 5, 'bitwise')),
  }),
};

const immediate: ExprCodec<'immediate'> = {
  kernelName: 'immediate',
  encode(w, e) {
    w.u32(1, e.dreg);
    writeValue(w, 2, e.data);
  },
  decode: (a) => ({
    type: 'immediate',
    dreg: readU32(need(a, 1, 'immediate')),
    data: readValue(need(a, 2, 'immediate')),
  }),
};

const verdict: ExprCodec<'verdict'> = {
  kernelName: 'immediate',
  encode(w, e) {
    w.u32(1, 0);
    writeVerdict(w, e.verdict);
  },
  decode: (a) => {
    const v = attrMap(need(a, 2, 'immediate').value).get(DATA.VERDICT);
    if (!v) throw new Error('immediate verdict without NFTA_DATA_VERDICT');
    return { type: 'verdict', verdict: readVerdict(v) };
  },
};

const counter: ExprCodec<'counter'> = {
  kernelName: 'counter',
  encode(w, e) {
    w.u64(1, e.bytes);
    w.u64(2, e.packets);
  },
  decode: (a) => ({
    type: 'counter',
    bytes: a.has(1) ? readU64(a.get(1)!) : 0n,
    packets: a.has(2) ? readU64(a.get(2)!) : 0n,
  }),
};

const redir: ExprCodec<'redir'> = {
  kernelName: 'redir',
  encode(w, e) {
    if (e.regProtoMin !== undefined) w.u32(1, e.regProtoMin);
    if (e.regProtoMax !== undefined) w.u32(2, e.regProtoMax);
    if (e.flags !== undefined) w.u32(3, e.flags);
  },
  decode: (a) => {
    const e: ExprOf<'redir'> = { type: 'redir' };
    if (a.has(1)) e.regProtoMin = readU32(a.get(1)!);
    if (a.has(2)) e.regProtoMax = readU32(a.get(2)!);
    if (a.has(3)) e.flags = readU32(a.get(3)!);
    return e;
  },
};

const tproxy: ExprCodec<'tproxy'> = {
  kernelName: 'tproxy',
  encode(w, e) {
    w.u32(1, FAMILY[e.family]);
    if (e.regAddr !== undefined) w.u32(2, e.regAddr);
    if (e.regPort !== undefined) w.u32(3, e.regPort);
  },
  decode: (a) => {
    const e: ExprOf<'tproxy'> = { type: 'tproxy', family: nameOf(FAMILY, readU32(need(a, 1, 'tproxy')), 'family') };
    if (a.has(2)) e.regAddr = readU32(a.get(2)!);
    if (a.has(3)) e.regPort = readU32(a.get(3)!);
    return e;
  },
};

const ct: ExprCodec<'ct'> = {
  kernelName: 'ct',
  encode(w, e) {
    w.u32(1, e.dreg);
    w.u32(2, CT_KEY[e.key]);
    if (e.direction !== undefined) w.attr(3, Buffer.from([e.direction]));
  },
  decode: (a) => {
    const e: ExprOf<'ct'> = {
      type: 'ct',
      dreg: readU32(need(a, 1, 'ct')),
      key: nameOf(CT_KEY, readU32(need(a, 2, 'ct')), 'ct key'),
    };
    if (a.has(3)) e.direction = a.get(3)!.value.readUInt8(0);
    return e;
  },
};

const ctSet: ExprCodec<'ct_set'> = {
  kernelName: 'ct',
  encode(w, e) {
    w.u32(2, CT_KEY[e.key]);
    if (e.direction !== undefined) w.attr(3, Buffer.from([e.direction]));
    w.u32(4, e.sreg);
  },
  decode: (a) => {
    const e: ExprOf<'ct_set'> = {
      type: 'ct_set',
      sreg: readU32(need(a, 4, 'ct')),
      key: nameOf(CT_KEY, readU32(need(a, 2, 'ct')), 'ct key'),
    };
    if (a.has(3)) e.direction = a.get(3)!.value.readUInt8(0);
    return e;
  },
};

const NFT_LOOKUP_F_INV = 1;
const lookup: ExprCodec<'lookup'> = {
  kernelName: 'lookup',
  encode(w, e) {
    w.str(1, e.set);
    w.u32(2, e.sreg);
    if (e.dreg !== undefined) w.u32(3, e.dreg);
    if (e.setId !== undefined) w.u32(4, e.setId);
    if (e.invert) w.u32(5, NFT_LOOKUP_F_INV);
  },
  decode: (a) => {
    const e: ExprOf<'lookup'> = {
      type: 'lookup',
      set: readStr(need(a, 1, 'lookup')),
      sreg: readU32(need(a, 2, 'lookup')),
    };
    if (a.has(3)) e.dreg = readU32(a.get(3)!);
    if (a.has(5) && (readU32(a.get(5)!) & NFT_LOOKUP_F_INV) !== 0) e.invert = true;
    return e;
  },
};

function xtCodec<T extends 'match' | 'target'>(type: T): ExprCodec<T> {
  return {
    kernelName: type,
    encode(w, e) {
      const x = e as Extract<Expr, { type: 'match' | 'target' }>;
      w.str(1, x.name);
      w.u32(2, x.rev);
      w.attr(3, x.info);
    },
    decode: (a) =>
      ({
        type,
        name: readStr(need(a, 1, type)),
        rev: readU32(need(a, 2, type)),
        info: Buffer.from(need(a, 3, type).value),
      }) as ExprOf<T>,
  };
}

const codecs: { [T in Expr['type']]: ExprCodec<T> } = {
  meta,
  meta_set: metaSet,
  payload,
  cmp,
  bitwise,
  immediate,
  verdict,
  counter,
  redir,
  tproxy,
  ct,
  ct_set: ctSet,
  lookup,
  match: xtCodec('match'),
  target: xtCodec('target'),
};

/** Writes one NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }. */
export function encodeExpr(w: NetlinkWriter, e: Expr): void {
  const codec = codecs[e.type] as ExprCodec<typeof e.type>;
  w.beginNest(1 /* NFTA_LIST_ELEM */);
  w.str(EXPR.NAME, codec.kernelName);
  w.beginNest(EXPR.DATA);
  codec.encode(w, e as never);
  w.endNest();
  w.endNest();
}

/** Reads one NFTA_LIST_ELEM back into an expression. Several Expr types share a kernel name. */
export function decodeExpr(elem: Attr): Expr {
  const m = attrMap(elem.value);
  const name = readStr(need(m, EXPR.NAME, 'expression'));
  const data = attrMap(m.get(EXPR.DATA)?.value ?? Buffer.alloc(0));
  switch (name) {
    case 'meta':
      return data.has(3) ? metaSet.decode(data) : meta.decode(data);
    case 'ct':
      return data.has(4) ? ctSet.decode(data) : ct.decode(data);
    case 'immediate': {
      const d = data.get(2);
      return d && attrMap(d.value).has(DATA.VERDICT) ? verdict.decode(data) : immediate.decode(data);
    }
    case 'payload':
    case 'cmp':
    case 'bitwise':
    case 'counter':
    case 'redir':
    case 'tproxy':
    case 'lookup':
    case 'match':
    case 'target':
      return codecs[name].decode(data);
    default:
      throw new Error(`unsupported nf_tables expression '${name}'`);
  }
}
