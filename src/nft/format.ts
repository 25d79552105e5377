// Human-readable, stable text for expressions and rules (in the spirit of `nft --debug=netlink`),
// used for diffs in errors, logs and tests. Counter values are left out: they change with traffic.
import type { Chain, Expr, Rule } from './model.js';

const hex = (b: Buffer): string => `0x${b.toString('hex')}`;

export function formatExpr(e: Expr): string {
  switch (e.type) {
    case 'meta':
      return `meta load ${e.key} => reg ${e.dreg}`;
    case 'meta_set':
      return `meta set ${e.key} with reg ${e.sreg}`;
    case 'payload':
      return `payload load ${e.len}b @ ${e.base} header + ${e.offset} => reg ${e.dreg}`;
    case 'cmp':
      return `cmp ${e.op} reg ${e.sreg} ${hex(e.data)}`;
    case 'bitwise':
      return `bitwise reg ${e.dreg} = (reg ${e.sreg} & ${hex(e.mask)}) ^ ${hex(e.xor)}`;
    case 'immediate':
      return `immediate reg ${e.dreg} ${hex(e.data)}`;
    case 'verdict':
      return `verdict ${e.verdict.code}${'chain' in e.verdict ? ` -> ${e.verdict.chain}` : ''}`;
    case 'counter':
      return 'counter';
    case 'redir':
      return `redir proto_min reg ${e.regProtoMin ?? '-'} proto_max reg ${e.regProtoMax ?? '-'} flags ${e.flags ?? 0}`;
    case 'tproxy':
      return `tproxy ${e.family} addr reg ${e.regAddr ?? '-'} port reg ${e.regPort ?? '-'}`;
    case 'ct':
      return `ct load ${e.key} => reg ${e.dreg}${e.direction !== undefined ? ` dir ${e.direction}` : ''}`;
    case 'ct_set':
      return `ct set ${e.key} with reg ${e.sreg}`;
    case 'lookup':
      return `lookup reg ${e.sreg} set ${e.set}${e.dreg !== undefined ? ` dreg ${e.dreg}` : ''}${e.invert ? ' 0x1' : ''}`;
    case 'match':
    case 'target':
      return `${e.type} ${e.name} rev ${e.rev} ${hex(e.info)}`;
  }
}

// NFTA_RULE_COMPAT is write-only: nft_compat reads it when the rule is created (the protocol an
// x_tables match may rely on) and the kernel never dumps it back (nf_tables_fill_rule_info has no
// such attribute). It is therefore not part of what a rule *is* in the kernel, and is left out of
// the description that CHECK, reconcile and the rules digest compare.
export const formatRule = (r: Rule): string =>
  `${r.family} ${r.table} ${r.chain} [ ${r.exprs.map(formatExpr).join(' ] [ ')} ]`;

export const formatChain = (c: Chain): string =>
  `${c.family} ${c.table} ${c.name}` +
  (c.base
    ? ` { type ${c.base.type} hook ${c.base.hook} priority ${c.base.priority}; policy ${c.base.policy ?? 'accept'} }`
    : '');
