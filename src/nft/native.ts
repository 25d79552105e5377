// Building blocks for native nftables rules (what `nft` itself emits for common selectors), so
// rule builders above can write `[...l4proto('tcp'), ...port('dport', 15008), counter(), ret()]`.
import {
  DATATYPE,
  FAMILY,
  IPPROTO,
  NFT_REG_1,
  SET_FLAGS,
  NFT_SET_ELEM_INTERVAL_END,
  type TableFamily,
} from './constants.js';
import { parsePrefix, type Prefix } from './addr.js';
import type { Expr, NftSet, SetElement } from './model.js';

const R = NFT_REG_1;
type Op = 'eq' | 'neq';
const opOf = (invert?: boolean): Op => (invert ? 'neq' : 'eq');

const u16be = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32le = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

export const counter = (): Expr => ({ type: 'counter', bytes: 0n, packets: 0n });
export const accept = (): Expr => ({ type: 'verdict', verdict: { code: 'accept' } });
export const drop = (): Expr => ({ type: 'verdict', verdict: { code: 'drop' } });
export const ret = (): Expr => ({ type: 'verdict', verdict: { code: 'return' } });
export const jump = (chain: string): Expr => ({ type: 'verdict', verdict: { code: 'jump', chain } });

/** `meta nfproto ipv4|ipv6` — the dependency nft adds before `ip …`/`ip6 …` selectors in an inet table. */
export const nfproto = (v: 4 | 6): Expr[] => [
  { type: 'meta', key: 'nfproto', dreg: R },
  { type: 'cmp', sreg: R, op: 'eq', data: Buffer.from([v === 4 ? FAMILY.ip : FAMILY.ip6]) },
];

/** `meta l4proto tcp|udp` (or `!=`). */
export const l4proto = (p: 'tcp' | 'udp', invert?: boolean): Expr[] => [
  { type: 'meta', key: 'l4proto', dreg: R },
  { type: 'cmp', sreg: R, op: opOf(invert), data: Buffer.from([IPPROTO[p]]) },
];

const portOffset = (which: 'sport' | 'dport'): number => (which === 'sport' ? 0 : 2);

/** `th dport N` — transport port, valid after an l4proto match. */
export const port = (which: 'sport' | 'dport', n: number, invert?: boolean): Expr[] => [
  { type: 'payload', base: 'transport', offset: portOffset(which), len: 2, dreg: R },
  { type: 'cmp', sreg: R, op: opOf(invert), data: u16be(n) },
];

/** `th dport @set` / `th dport != @set`. */
export const portInSet = (which: 'sport' | 'dport', set: NftSet, invert?: boolean): Expr[] => [
  { type: 'payload', base: 'transport', offset: portOffset(which), len: 2, dreg: R },
  lookupIn(set, invert),
];

/** `oifname "lo"` / `iifname "eth0"` (exact names, NUL padded to IFNAMSIZ as nft does). */
export const ifname = (key: 'iifname' | 'oifname', name: string, invert?: boolean): Expr[] => {
  const data = Buffer.alloc(16);
  data.write(name);
  return [
    { type: 'meta', key, dreg: R },
    { type: 'cmp', sreg: R, op: opOf(invert), data },
  ];
};

const addrOffset = (p: Prefix, which: 'saddr' | 'daddr'): number =>
  p.family === 4 ? (which === 'saddr' ? 12 : 16) : which === 'saddr' ? 8 : 24;

/** `ip daddr 10.0.0.0/8` / `ip6 saddr != ::6` as nft encodes them, with the nfproto dependency when `inet` is true. */
export const addr = (
  which: 'saddr' | 'daddr',
  prefix: string,
  opts: { invert?: boolean; inet?: boolean } = {},
): Expr[] => [...(opts.inet ? nfproto(parsePrefix(prefix).family) : []), ...prefixMatch(which, prefix, opts.invert)];

/**
 * `ip daddr 10.0.0.0/8` exactly as nft 1.0 encodes it, without the nfproto dependency: a
 * byte-aligned prefix loads only its own bytes (10.0.0.0/8 → one byte), any other prefix loads the
 * whole address and masks it, a full-length one compares the whole address.
 */
export const prefixMatch = (which: 'saddr' | 'daddr', prefix: string, invert?: boolean): Expr[] => {
  const p = parsePrefix(prefix);
  const full = p.addr.length;
  const offset = addrOffset(p, which);
  if (p.bits > 0 && p.bits % 8 === 0) {
    const n = p.bits / 8;
    return [
      { type: 'payload', base: 'network', offset, len: n, dreg: R },
      { type: 'cmp', sreg: R, op: opOf(invert), data: Buffer.from(p.addr.subarray(0, n)) },
    ];
  }
  return [
    { type: 'payload', base: 'network', offset, len: full, dreg: R },
    { type: 'bitwise', sreg: R, dreg: R, len: full, mask: p.mask, xor: Buffer.alloc(full) },
    { type: 'cmp', sreg: R, op: opOf(invert), data: p.addr },
  ];
};

/** `ip daddr @set` for an address-interval set of family 4 or 6. */
export const addrInSet = (
  which: 'saddr' | 'daddr',
  family: 4 | 6,
  set: NftSet,
  opts: { invert?: boolean; inet?: boolean } = {},
): Expr[] => [
  ...(opts.inet ? nfproto(family) : []),
  {
    type: 'payload',
    base: 'network',
    offset: family === 4 ? (which === 'saddr' ? 12 : 16) : which === 'saddr' ? 8 : 24,
    len: family === 4 ? 4 : 16,
    dreg: R,
  },
  lookupIn(set, opts.invert),
];

/** `meta skuid N` / `meta skgid N`. */
export const sk = (key: 'skuid' | 'skgid', id: number, invert?: boolean): Expr[] => [
  { type: 'meta', key, dreg: R },
  { type: 'cmp', sreg: R, op: opOf(invert), data: u32le(id) },
];

/** `meta mark N`. */
export const markIs = (mark: number, invert?: boolean): Expr[] => [
  { type: 'meta', key: 'mark', dreg: R },
  { type: 'cmp', sreg: R, op: opOf(invert), data: u32le(mark) },
];

/** `meta mark set N`. */
export const setMark = (mark: number): Expr[] => [
  { type: 'immediate', dreg: R, data: u32le(mark) },
  { type: 'meta_set', key: 'mark', sreg: R },
];

/** `ct mark N`. */
export const ctMarkIs = (mark: number): Expr[] => [
  { type: 'ct', key: 'mark', dreg: R },
  { type: 'cmp', sreg: R, op: 'eq', data: u32le(mark) },
];

/** `ct mark set meta mark` / `meta mark set ct mark`. */
export const saveMarkToCt = (): Expr[] => [
  { type: 'meta', key: 'mark', dreg: R },
  { type: 'ct_set', key: 'mark', sreg: R },
];
export const restoreMarkFromCt = (): Expr[] => [
  { type: 'ct', key: 'mark', dreg: R },
  { type: 'meta_set', key: 'mark', sreg: R },
];

const CT_STATE = { invalid: 1, established: 2, related: 4, new: 8, untracked: 64 } as const;

/** `ct state invalid` / `ct state established,related` (any of the states). */
export const ctState = (states: (keyof typeof CT_STATE)[]): Expr[] => {
  const mask = states.reduce((m, s) => m | CT_STATE[s], 0);
  return [
    { type: 'ct', key: 'state', dreg: R },
    { type: 'bitwise', sreg: R, dreg: R, len: 4, mask: u32le(mask), xor: Buffer.alloc(4) },
    { type: 'cmp', sreg: R, op: 'neq', data: Buffer.alloc(4) },
  ];
};

/** `ct zone set N`. */
export const setCtZone = (zone: number): Expr[] => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(zone);
  return [
    { type: 'immediate', dreg: R, data: b },
    { type: 'ct_set', key: 'zone', sreg: R },
  ];
};

const NF_NAT_RANGE_PROTO_SPECIFIED = 2;

/**
 * `redirect to :PORT`. The kernel stores (and dumps) proto_max = proto_min when proto_max is left
 * out (nft_redir_init), so both are sent: the plan then reads back exactly as the kernel holds it.
 */
export const redirectTo = (p: number): Expr[] => [
  { type: 'immediate', dreg: R, data: u16be(p) },
  { type: 'redir', regProtoMin: R, regProtoMax: R, flags: NF_NAT_RANGE_PROTO_SPECIFIED },
];

/** `tproxy ip to :PORT` (family ip or ip6; `unspec` in an inet table serves both). */
export const tproxyTo = (family: TableFamily | 'unspec', p: number): Expr[] => [
  { type: 'immediate', dreg: R, data: u16be(p) },
  { type: 'tproxy', family, regPort: R },
];

function lookupIn(set: NftSet, invert?: boolean): Expr {
  const e: Expr = { type: 'lookup', set: set.name, sreg: R };
  if (set.id !== undefined) e.setId = set.id;
  if (invert) e.invert = true;
  return e;
}

/** A named set of transport ports (`type inet_service`). */
export function portSet(
  family: TableFamily,
  table: string,
  name: string,
  ports: readonly number[],
  id?: number,
): NftSet {
  const s: NftSet = {
    family,
    table,
    name,
    flags: 0,
    keyType: DATATYPE.inet_service,
    keyLen: 2,
    elements: [...new Set(ports)].map((p) => ({ key: u16be(p) })),
  };
  if (id !== undefined) s.id = id;
  return s;
}

/**
 * An anonymous constant set of ports, as nft makes for `tcp dport != { 53, 15008 }`. nft sends
 * `__set%d` and the kernel numbers it; meshcni sends the name that numbering gives (`__set0`,
 * `__set1`, … in creation order within a new table), so its plan and the kernel's dump agree.
 */
export function anonymousPortSet(
  family: TableFamily,
  table: string,
  name: string,
  ports: readonly number[],
  id: number,
): NftSet {
  return { ...portSet(family, table, name, ports, id), flags: SET_FLAGS.ANONYMOUS | SET_FLAGS.CONSTANT };
}

/** A named interval set of prefixes of one address family (`type ipv4_addr; flags interval`). */
export function prefixSet(
  family: TableFamily,
  table: string,
  name: string,
  ipFamily: 4 | 6,
  prefixes: readonly string[],
  id?: number,
): NftSet {
  const parsed = prefixes.map(parsePrefix);
  for (const p of parsed) {
    if (p.family !== ipFamily)
      throw new Error(`set ${name}: ${p.addr.length === 4 ? 'IPv4' : 'IPv6'} prefix in an IPv${ipFamily} set`);
  }
  const s: NftSet = {
    family,
    table,
    name,
    flags: SET_FLAGS.INTERVAL,
    keyType: ipFamily === 4 ? DATATYPE.ipv4_addr : DATATYPE.ipv6_addr,
    keyLen: ipFamily === 4 ? 4 : 16,
    elements: intervalElements(mergePrefixes(parsed)),
  };
  if (id !== undefined) s.id = id;
  return s;
}

/** Sorts prefixes and drops those covered by another (an interval set may not overlap). */
function mergePrefixes(ps: Prefix[]): Prefix[] {
  const sorted = [...ps].sort((a, b) => Buffer.compare(a.addr, b.addr) || a.bits - b.bits);
  const out: Prefix[] = [];
  for (const p of sorted) {
    const last = out.at(-1);
    if (last && covers(last, p)) continue;
    out.push(p);
  }
  return out;
}

function covers(outer: Prefix, inner: Prefix): boolean {
  if (outer.bits > inner.bits) return false;
  for (let i = 0; i < outer.addr.length; i++) if ((inner.addr[i]! & outer.mask[i]!) !== outer.addr[i]) return false;
  return true;
}

/**
 * Each prefix as [start, end+1 flagged INTERVAL_END]; the end is omitted when it wraps past the top.
 * Like nft, a set whose first range starts above zero begins with an INTERVAL_END element at zero.
 */
function intervalElements(ps: Prefix[]): SetElement[] {
  const out: SetElement[] = [];
  const first = ps[0];
  if (first && first.addr.some((b) => b !== 0))
    out.push({ key: Buffer.alloc(first.addr.length), flags: NFT_SET_ELEM_INTERVAL_END });
  for (const p of ps) {
    out.push({ key: Buffer.from(p.addr) });
    const end = Buffer.alloc(p.addr.length);
    for (let i = 0; i < end.length; i++) end[i] = p.addr[i]! | (~p.mask[i]! & 0xff);
    let carry = 1;
    for (let i = end.length - 1; i >= 0 && carry; i--) {
      const v = end[i]! + carry;
      end[i] = v & 0xff;
      carry = v >> 8;
    }
    if (!carry) out.push({ key: end, flags: NFT_SET_ELEM_INTERVAL_END });
  }
  return out;
}
