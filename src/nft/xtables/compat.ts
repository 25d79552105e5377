// The x_tables structs iptables-nft hands to the kernel inside `match` / `target` expressions,
// laid out as in include/uapi/linux/netfilter/xt_*.h (host byte order unless noted; x86-64 sizes).
import { parsePrefix } from '../addr.js';
import type { Expr } from '../model.js';
import type { CtState, XtFamily } from './model.js';

type XtExpr = Extract<Expr, { type: 'match' | 'target' }>;

const XT_OWNER_UID = 1;
const XT_OWNER_GID = 2;

/** xt_owner_match_info (rev 1): uid_min, uid_max, gid_min, gid_max, match, invert → 24 bytes. */
export function ownerMatch(
  uid?: { value: number; invert?: boolean },
  gid?: { value: number; invert?: boolean },
): XtExpr {
  const b = Buffer.alloc(24);
  let match = 0;
  let invert = 0;
  if (uid) {
    b.writeUInt32LE(uid.value, 0);
    b.writeUInt32LE(uid.value, 4);
    match |= XT_OWNER_UID;
    if (uid.invert) invert |= XT_OWNER_UID;
  }
  if (gid) {
    b.writeUInt32LE(gid.value, 8);
    b.writeUInt32LE(gid.value, 12);
    match |= XT_OWNER_GID;
    if (gid.invert) invert |= XT_OWNER_GID;
  }
  b.writeUInt8(match, 16);
  b.writeUInt8(invert, 17);
  return { type: 'match', name: 'owner', rev: 1, info: b };
}

const XT_MULTI_PORTS = 15;

/** xt_multiport_v1 (rev 1): flags, count, ports[15], pflags[15], invert → 48 bytes. */
export function multiportMatch(direction: 'dports' | 'sports', ports: number[], invert: boolean): XtExpr {
  if (ports.length === 0 || ports.length > XT_MULTI_PORTS) {
    throw new Error(`multiport takes 1 to ${XT_MULTI_PORTS} ports, got ${ports.length}`);
  }
  const b = Buffer.alloc(48);
  b.writeUInt8(direction === 'dports' ? 1 : 0, 0);
  b.writeUInt8(ports.length, 1);
  ports.forEach((p, i) => b.writeUInt16LE(p, 2 + i * 2));
  b.writeUInt8(invert ? 1 : 0, 47);
  return { type: 'match', name: 'multiport', rev: 1, info: b };
}

const CT_STATE_BITS: Record<CtState, number> = {
  INVALID: 1 << 0,
  ESTABLISHED: 1 << 1,
  RELATED: 1 << 2,
  NEW: 1 << 3,
  UNTRACKED: 1 << 6,
  SNAT: 1 << 7,
  DNAT: 1 << 8,
};
const XT_CONNTRACK_STATE = 1;

/** xt_conntrack_mtinfo3 (rev 3), only the state part → 168 bytes. */
export function conntrackStateMatch(states: CtState[], invert: boolean): XtExpr {
  const b = Buffer.alloc(168);
  const mask = states.reduce((m, s) => m | CT_STATE_BITS[s], 0);
  b.writeUInt16LE(XT_CONNTRACK_STATE, 146);
  b.writeUInt16LE(invert ? XT_CONNTRACK_STATE : 0, 148);
  b.writeUInt16LE(mask, 150);
  return { type: 'match', name: 'conntrack', rev: 3, info: b };
}

/** xt_connmark_mtinfo1 (rev 1): mark, mask, invert → 16 bytes. */
export function connmarkMatch(mark: number, mask: number, invert: boolean): XtExpr {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(mark >>> 0, 0);
  b.writeUInt32LE(mask >>> 0, 4);
  b.writeUInt8(invert ? 1 : 0, 8);
  return { type: 'match', name: 'connmark', rev: 1, info: b };
}

/** xt_socket_mtinfo3 (rev 3): flags → 8 bytes. */
export function socketMatch(transparent: boolean): XtExpr {
  const b = Buffer.alloc(8);
  b.writeUInt8(transparent ? 1 : 0, 0);
  return { type: 'match', name: 'socket', rev: 3, info: b };
}

const NF_NAT_RANGE_PROTO_SPECIFIED = 2;

/**
 * REDIRECT (rev 0). IPv4: nf_nat_ipv4_multi_range_compat (rangesize, flags, min_ip, max_ip,
 * min/max port big-endian) → 24 bytes. IPv6: nf_nat_range (flags, min/max addr, min/max port) → 40.
 */
export function redirectTarget(family: XtFamily, port: number): XtExpr {
  if (family === 'ip') {
    const b = Buffer.alloc(24);
    b.writeUInt32LE(1, 0);
    b.writeUInt32LE(NF_NAT_RANGE_PROTO_SPECIFIED, 4);
    b.writeUInt16BE(port, 16);
    b.writeUInt16BE(port, 18);
    return { type: 'target', name: 'REDIRECT', rev: 0, info: b };
  }
  const b = Buffer.alloc(40);
  b.writeUInt32LE(NF_NAT_RANGE_PROTO_SPECIFIED, 0);
  b.writeUInt16BE(port, 36);
  b.writeUInt16BE(port, 38);
  return { type: 'target', name: 'REDIRECT', rev: 0, info: b };
}

/** xt_tproxy_target_info_v1 (rev 1): mark_mask, mark_value, laddr (16), lport (BE) → 32 bytes. */
export function tproxyTarget(
  family: XtFamily,
  port: number,
  onIp: string | undefined,
  mark: number,
  mask: number,
): XtExpr {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(mask >>> 0, 0);
  b.writeUInt32LE(mark >>> 0, 4);
  if (onIp) {
    const p = parsePrefix(onIp);
    if ((p.family === 4) !== (family === 'ip'))
      throw new Error(`TPROXY --on-ip ${onIp} does not match family ${family}`);
    p.addr.copy(b, 8);
  }
  b.writeUInt16BE(port, 24);
  return { type: 'target', name: 'TPROXY', rev: 1, info: b };
}

/** xt_mark_tginfo2 (rev 2): mark, mask → 8 bytes (`--set-xmark`). */
export function markTarget(value: number, mask: number): XtExpr {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(value >>> 0, 0);
  b.writeUInt32LE(mask >>> 0, 4);
  return { type: 'target', name: 'MARK', rev: 2, info: b };
}

/** xt_connmark_tginfo2 (rev 2): ctmark, ctmask, nfmask, shift_dir, shift_bits, mode → 16 bytes. */
export function connmarkTarget(mode: 'save' | 'restore', nfmask: number, ctmask: number): XtExpr {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(ctmask >>> 0, 4);
  b.writeUInt32LE(nfmask >>> 0, 8);
  b.writeUInt8(mode === 'save' ? 1 : 2, 14);
  return { type: 'target', name: 'CONNMARK', rev: 2, info: b };
}

/** xt_ct_target_info_v1 (rev 2): flags, zone, events, helper, timeout, kernel pointer → 72 bytes. */
export function ctZoneTarget(zone: number): XtExpr {
  const b = Buffer.alloc(72);
  b.writeUInt16LE(zone, 2);
  return { type: 'target', name: 'CT', rev: 2, info: b };
}
