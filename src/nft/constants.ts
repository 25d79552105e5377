// nf_tables uapi numbers (include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h), named once.

export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 0x10;
export const NFNL_MSG_BATCH_END = 0x11;

export const NFT_MSG = {
  NEWTABLE: 0,
  GETTABLE: 1,
  DELTABLE: 2,
  NEWCHAIN: 3,
  GETCHAIN: 4,
  DELCHAIN: 5,
  NEWRULE: 6,
  GETRULE: 7,
  DELRULE: 8,
  NEWSET: 9,
  GETSET: 10,
  DELSET: 11,
  NEWSETELEM: 12,
  GETSETELEM: 13,
  DELSETELEM: 14,
} as const;

export const msgType = (m: number): number => (NFNL_SUBSYS_NFTABLES << 8) | m;

export const FAMILY = { unspec: 0, inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 } as const;
export type TableFamily = Exclude<keyof typeof FAMILY, 'unspec'>;

export const TABLE = { NAME: 1, FLAGS: 2, USE: 3, HANDLE: 4, USERDATA: 6 } as const;
export const CHAIN = {
  TABLE: 1,
  HANDLE: 2,
  NAME: 3,
  HOOK: 4,
  POLICY: 5,
  USE: 6,
  TYPE: 7,
  COUNTERS: 8,
  FLAGS: 10,
} as const;
export const HOOK_ATTR = { HOOKNUM: 1, PRIORITY: 2 } as const;
export const RULE = {
  TABLE: 1,
  CHAIN: 2,
  HANDLE: 3,
  EXPRESSIONS: 4,
  COMPAT: 5,
  POSITION: 6,
  USERDATA: 7,
} as const;
export const RULE_COMPAT = { PROTO: 1, FLAGS: 2 } as const;
export const NFT_RULE_COMPAT_F_INV = 1 << 1;
export const LIST_ELEM = 1;
export const EXPR = { NAME: 1, DATA: 2 } as const;
export const DATA = { VALUE: 1, VERDICT: 2 } as const;
export const VERDICT_ATTR = { CODE: 1, CHAIN: 2 } as const;

export const SET = {
  TABLE: 1,
  NAME: 2,
  FLAGS: 3,
  KEY_TYPE: 4,
  KEY_LEN: 5,
  DATA_TYPE: 6,
  DATA_LEN: 7,
  POLICY: 8,
  DESC: 9,
  ID: 10,
  USERDATA: 13,
  HANDLE: 16,
} as const;
export const SET_FLAGS = { ANONYMOUS: 0x1, CONSTANT: 0x2, INTERVAL: 0x4, MAP: 0x8 } as const;
export const SET_ELEM_LIST = { TABLE: 1, SET: 2, ELEMENTS: 3, SET_ID: 4 } as const;
export const SET_ELEM = { KEY: 1, DATA: 2, FLAGS: 3, KEY_END: 10 } as const;
export const NFT_SET_ELEM_INTERVAL_END = 0x1;

/** Verdict codes (include/uapi/linux/netfilter.h and nf_tables.h). */
export const VERDICT_CODE = {
  drop: 0,
  accept: 1,
  continue: -1,
  break: -2,
  jump: -3,
  goto: -4,
  return: -5,
} as const;
export type VerdictCode = keyof typeof VERDICT_CODE;

export const HOOK = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;
export type HookName = keyof typeof HOOK;

/** Netfilter register numbers: 0 = verdict, 1..4 = 128-bit, 8..23 = 32-bit. */
export const NFT_REG_VERDICT = 0;
export const NFT_REG_1 = 1;

export const META_KEY = {
  len: 0,
  protocol: 1,
  priority: 2,
  mark: 3,
  iif: 4,
  oif: 5,
  iifname: 6,
  oifname: 7,
  iiftype: 8,
  oiftype: 9,
  skuid: 10,
  skgid: 11,
  nftrace: 12,
  rtclassid: 13,
  secmark: 14,
  nfproto: 15,
  l4proto: 16,
} as const;
export type MetaKey = keyof typeof META_KEY;

export const CT_KEY = { state: 0, direction: 1, status: 2, mark: 3, zone: 17 } as const;
export type CtKey = keyof typeof CT_KEY;

export const PAYLOAD_BASE = { link: 0, network: 1, transport: 2, inner: 3 } as const;
export type PayloadBase = keyof typeof PAYLOAD_BASE;

export const CMP_OP = { eq: 0, neq: 1, lt: 2, lte: 3, gt: 4, gte: 5 } as const;
export type CmpOp = keyof typeof CMP_OP;

export const IPPROTO = { tcp: 6, udp: 17 } as const;

/** nftables' datatype ids, used for set key types. */
export const DATATYPE = { ipv4_addr: 7, ipv6_addr: 8, inet_proto: 12, inet_service: 13, mark: 19 } as const;

/** Reverse lookup for the name maps above. */
export function nameOf<T extends Record<string, number>>(map: T, value: number, what: string): keyof T {
  for (const [k, v] of Object.entries(map)) if (v === value) return k as keyof T;
  throw new Error(`unknown ${what} ${value}`);
}
