// iptables rules as data: the vocabulary of `iptables-save`, for the rules iptables-nft can express.
// Pure data. `encode.ts` turns it into nf_tables expressions the way iptables-nft 1.8.9 does;
// `render.ts` turns it into `iptables-restore` text. Nothing here knows about service meshes.

/** iptables `-4` (`ip` table family) or ip6tables `-6` (`ip6` family). */
export type XtFamily = 'ip' | 'ip6';

/** The iptables tables meshcni may write. */
export type XtTableName = 'nat' | 'mangle' | 'raw' | 'filter';

/** A value that iptables lets you negate with `!`. */
export type Negatable<T> = { value: T; invert?: boolean };

/** An IPv4 or IPv6 prefix in text form, e.g. `127.0.0.1/32`, `::1/128`, `10.0.0.0/8`. */
export type Cidr = string;

export type XtMatch =
  /** `-m tcp` / `-m udp` with `--dport` / `--sport` (a single port). */
  | { kind: 'tcp' | 'udp'; dport?: Negatable<number>; sport?: Negatable<number> }
  /** `-m multiport --dports a,b,c` or `--sports` (up to 15 ports), optionally negated. */
  | { kind: 'multiport'; direction: 'dports' | 'sports'; ports: number[]; invert?: boolean }
  /** `-m owner --uid-owner N` and/or `--gid-owner N`, each optionally negated. */
  | { kind: 'owner'; uid?: Negatable<number>; gid?: Negatable<number> }
  /** `-m conntrack --ctstate A,B`. */
  | { kind: 'conntrack'; ctstate: Negatable<CtState[]> }
  /** `-m mark --mark V[/M]`. */
  | { kind: 'mark'; mark: Negatable<number>; mask?: number }
  /** `-m connmark --mark V[/M]`. */
  | { kind: 'connmark'; mark: Negatable<number>; mask?: number }
  /** `-m socket` (optionally `--transparent`). */
  | { kind: 'socket'; transparent?: boolean };

export type CtState = 'INVALID' | 'NEW' | 'ESTABLISHED' | 'RELATED' | 'UNTRACKED' | 'SNAT' | 'DNAT';

export type XtTarget =
  | { kind: 'jump'; chain: string }
  | { kind: 'goto'; chain: string }
  | { kind: 'ACCEPT' | 'DROP' | 'RETURN' }
  /** `-j REDIRECT --to-ports N`. */
  | { kind: 'REDIRECT'; toPort: number }
  /** `-j TPROXY --on-port N [--on-ip A] --tproxy-mark V/M`. */
  | { kind: 'TPROXY'; onPort: number; onIp?: string; mark: number; mask: number }
  /** `-j MARK --set-xmark V/M`. */
  | { kind: 'MARK'; value: number; mask: number }
  /** `-j CONNMARK --save-mark` / `--restore-mark` with `--nfmask` / `--ctmask`. */
  | { kind: 'CONNMARK'; mode: 'save' | 'restore'; nfmask: number; ctmask: number }
  /** `-j CT --zone N`. */
  | { kind: 'CT'; zone: number };

/** One `-A CHAIN ...` line. Field order here is not significant; iptables prints its own order. */
export interface XtRule {
  chain: string;
  protocol?: Negatable<'tcp' | 'udp'>;
  source?: Negatable<Cidr>;
  destination?: Negatable<Cidr>;
  inInterface?: Negatable<string>;
  outInterface?: Negatable<string>;
  matches?: XtMatch[];
  target: XtTarget;
}

/** One `*table` section: user chains in creation order, rules in order (any chain). */
export interface XtTable {
  name: XtTableName;
  /** User-defined chains (`:NAME - [0:0]`), in the order they are created. */
  chains: string[];
  rules: XtRule[];
}

/** What one of `iptables-restore` / `ip6tables-restore` would be fed. */
export interface XtRuleset {
  family: XtFamily;
  tables: XtTable[];
}

/** The built-in chains of each table, in iptables' order, with their netfilter hooks. */
export const BUILTIN_CHAINS: Record<XtTableName, readonly string[]> = {
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};
