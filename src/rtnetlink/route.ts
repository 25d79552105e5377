// Room rtnetlink: the routing messages beside nftables (policy rules, local routes, addresses), as data → bytes.
// rtnetlink as data → bytes: the few routing messages a captured pod may need beside its nftables
// rules (TPROXY's policy rule and local route, the ::6 inbound-passthrough address on lo).
// rtnetlink attributes are in host byte order (little-endian here), unlike nf_tables' big-endian.
import { ipv4Bytes, ipv6Bytes, parsePrefix } from '../nft/addr.js';
import { NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST } from '../nft/netlink.js';

const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_NEWRULE = 32;
const RTM_DELRULE = 33;
const AF_INET = 2;
const AF_INET6 = 10;
const FRA_PRIORITY = 6;
const FRA_FWMARK = 10;
/** The preference `ip rule add` picks in a fresh namespace; fixed so a repeat is EEXIST, not a copy. */
const RULE_PRIORITY = 32765;
const FRA_TABLE = 15;
const FRA_FWMASK = 16;
const FR_ACT_TO_TBL = 1;
const RTA_OIF = 4;
const RTA_TABLE = 15;
const RTN_LOCAL = 2;
const RT_SCOPE_HOST = 254;
const RTPROT_BOOT = 3;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_F_NODAD = 0x02;
const RT_SCOPE_HOST_ADDR = 254;
/** `lo` is always interface 1 in a network namespace. */
export const LOOPBACK_IFINDEX = 1;

/** What a pod needs besides nftables. */
export interface RoutingPlan {
  /** TPROXY: `ip rule add fwmark MARK lookup TABLE` + `ip route add local default dev lo table TABLE`. */
  tproxy?: { mark: number; table: number; families: readonly (4 | 6)[] };
  /** Addresses to put on `lo` (e.g. `::6/128` for IPv6 inbound passthrough). */
  loopbackAddresses?: readonly string[];
}

export interface RouteBatch {
  buffer: Buffer;
  descriptions: string[];
  /**
   * Per message, the message that takes it back (same header and attributes, RTM_DEL*). Every add
   * is exclusive, so a message the kernel acknowledged is one this batch added, and EEXIST marks
   * one that was there before: undoing exactly the acknowledged ones leaves the namespace as found.
   */
  undo: Buffer[];
}

const DEL_FLAGS = NLM_F_REQUEST | NLM_F_ACK;
const ADD_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

function attrU32(type: number, v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(8, 0);
  b.writeUInt16LE(type, 2);
  b.writeUInt32LE(v >>> 0, 4);
  return b;
}

function attrBytes(type: number, v: Buffer): Buffer {
  const len = 4 + v.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  v.copy(b, 4);
  return b;
}

function message(type: number, flags: number, seq: number, header: Buffer, attrs: Buffer[]): Buffer {
  const body = Buffer.concat([header, ...attrs]);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  return Buffer.concat([h, body]);
}

const familyOf = (v: 4 | 6): number => (v === 4 ? AF_INET : AF_INET6);

function ruleMessage(type: number, flags: number, seq: number, v: 4 | 6, mark: number, table: number): Buffer {
  const hdr = Buffer.alloc(12);
  hdr.writeUInt8(familyOf(v), 0);
  hdr.writeUInt8(table < 256 ? table : 252, 4);
  hdr.writeUInt8(FR_ACT_TO_TBL, 7);
  return message(type, flags, seq, hdr, [
    attrU32(FRA_PRIORITY, RULE_PRIORITY),
    attrU32(FRA_FWMARK, mark),
    attrU32(FRA_FWMASK, 0xffffffff),
    attrU32(FRA_TABLE, table),
  ]);
}

function localRouteMessage(type: number, flags: number, seq: number, v: 4 | 6, table: number): Buffer {
  const hdr = Buffer.alloc(12);
  hdr.writeUInt8(familyOf(v), 0);
  hdr.writeUInt8(table < 256 ? table : 252, 4);
  hdr.writeUInt8(RTPROT_BOOT, 5);
  hdr.writeUInt8(RT_SCOPE_HOST, 6);
  hdr.writeUInt8(RTN_LOCAL, 7);
  return message(type, flags, seq, hdr, [attrU32(RTA_TABLE, table), attrU32(RTA_OIF, LOOPBACK_IFINDEX)]);
}

function addressMessage(type: number, flags: number, seq: number, prefix: string): Buffer {
  const p = parsePrefix(prefix);
  const v6 = p.family === 6;
  const hdr = Buffer.alloc(8);
  hdr.writeUInt8(v6 ? AF_INET6 : AF_INET, 0);
  hdr.writeUInt8(p.bits, 1);
  hdr.writeUInt8(IFA_F_NODAD, 2);
  hdr.writeUInt8(RT_SCOPE_HOST_ADDR, 3);
  hdr.writeUInt32LE(LOOPBACK_IFINDEX, 4);
  const addr = v6 ? ipv6Bytes(prefix.split('/')[0]!) : ipv4Bytes(prefix.split('/')[0]!);
  return message(type, flags, seq, hdr, [attrBytes(IFA_LOCAL, addr), attrBytes(IFA_ADDRESS, addr)]);
}

/** Encodes the plan as exclusive rtnetlink adds, each acknowledged, seq 1…n, with their undo. */
export function routingBatch(plan: RoutingPlan): RouteBatch | null {
  const parts: Buffer[] = [];
  const undo: Buffer[] = [];
  const descriptions: string[] = [];
  let seq = 1;
  const add = (build: (type: 'add' | 'del', flags: number, seq: number) => Buffer, d: string): void => {
    parts.push(build('add', ADD_FLAGS, seq));
    undo.push(build('del', DEL_FLAGS, seq));
    descriptions.push(d);
    seq++;
  };
  for (const a of plan.loopbackAddresses ?? []) {
    add((t, f, s) => addressMessage(t === 'add' ? RTM_NEWADDR : RTM_DELADDR, f, s, a), `add address ${a} dev lo`);
  }
  if (plan.tproxy) {
    const { mark, table, families } = plan.tproxy;
    for (const v of families) {
      add(
        (t, f, s) => ruleMessage(t === 'add' ? RTM_NEWRULE : RTM_DELRULE, f, s, v, mark, table),
        `ip -${v} rule add fwmark ${mark} lookup ${table}`,
      );
      add(
        (t, f, s) => localRouteMessage(t === 'add' ? RTM_NEWROUTE : RTM_DELROUTE, f, s, v, table),
        `ip -${v} route add local default dev lo table ${table}`,
      );
    }
  }
  return parts.length === 0 ? null : { buffer: Buffer.concat(parts), descriptions, undo };
}
