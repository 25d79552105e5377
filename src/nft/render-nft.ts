// nftables tables as data → `nft -f` text (the syntax `nft list ruleset` prints), for the
// expression patterns meshcni builds. Used by `meshcni-agent rules --layout nft` and the benchmark
// that feeds the same ruleset to `nft -f`. An expression sequence it does not know is an error.
import { formatAddr } from './addr.js';
import { FAMILY, NFT_SET_ELEM_INTERVAL_END, DATATYPE, SET_FLAGS } from './constants.js';
import type { Chain, Expr, NftSet, Rule, TableContents } from './model.js';

const CT_STATES: [number, string][] = [
  [1, 'invalid'],
  [2, 'established'],
  [4, 'related'],
  [8, 'new'],
  [64, 'untracked'],
];

const op = (o: string): string => (o === 'neq' ? '!= ' : '');
const le32 = (b: Buffer): number => b.readUInt32LE(0);
const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

function prefixLen(mask: Buffer): number {
  let bits = 0;
  for (const byte of mask) for (let i = 7; i >= 0; i--) if (byte & (1 << i)) bits++;
  return bits;
}

/** The address field a network-header load starts at (a short load is a byte-aligned prefix). */
function networkField(offset: number): { name: string; size: number } {
  if (offset === 12 || offset === 16) return { name: offset === 12 ? 'ip saddr' : 'ip daddr', size: 4 };
  return { name: offset === 8 ? 'ip6 saddr' : 'ip6 daddr', size: 16 };
}

/** A lookup as text: `@name`, or the elements inline for an anonymous set (as nft lists it). */
function lookupText(set: string, sets: ReadonlyMap<string, NftSet>): string {
  const s = sets.get(set);
  return s && s.flags & SET_FLAGS.ANONYMOUS ? `{ ${elementText(s).join(', ')} }` : `@${set}`;
}

/** Renders one rule's expressions; consumes them in recognised groups. */
export function renderExprs(exprs: readonly Expr[], sets: ReadonlyMap<string, NftSet> = new Map()): string {
  const out: string[] = [];
  for (let i = 0; i < exprs.length; i++) {
    const e = exprs[i]!;
    const next = exprs[i + 1];
    const fail = (): never => {
      throw new Error(`render-nft: unsupported expression sequence at ${i}: ${e.type}`);
    };
    switch (e.type) {
      case 'meta': {
        if (next?.type === 'cmp') {
          i++;
          const d = next.data;
          const after = exprs[i + 1];
          // The dependency nft adds itself before an `ip`/`ip6` selector of that family is not printed, as nft lists it.
          const implied =
            e.key === 'nfproto' &&
            next.op === 'eq' &&
            after?.type === 'payload' &&
            after.base === 'network' &&
            networkField(after.offset).size === (d[0] === FAMILY.ip ? 4 : 16);
          if (implied) continue;
          if (e.key === 'nfproto') out.push(`meta nfproto ${op(next.op)}${d[0] === FAMILY.ip ? 'ipv4' : 'ipv6'}`);
          else if (e.key === 'l4proto')
            out.push(`meta l4proto ${op(next.op)}${d[0] === 6 ? 'tcp' : d[0] === 17 ? 'udp' : d[0]}`);
          else if (e.key === 'iifname' || e.key === 'oifname')
            out.push(`${e.key} ${op(next.op)}"${d.toString('utf8').replace(/\0+$/, '')}"`);
          else if (e.key === 'skuid' || e.key === 'skgid') out.push(`meta ${e.key} ${op(next.op)}${le32(d)}`);
          else if (e.key === 'mark') out.push(`meta mark ${op(next.op)}${hex(le32(d))}`);
          else fail();
        } else if (next?.type === 'ct_set' && e.key === 'mark') {
          i++;
          out.push('ct mark set meta mark');
        } else fail();
        break;
      }
      case 'payload': {
        if (e.base === 'transport') {
          const field = e.offset === 0 ? 'th sport' : 'th dport';
          if (next?.type === 'cmp') out.push(`${field} ${op(next.op)}${next.data.readUInt16BE(0)}`);
          else if (next?.type === 'lookup')
            out.push(`${field} ${next.invert ? '!= ' : ''}${lookupText(next.set, sets)}`);
          else fail();
          i++;
        } else if (e.base === 'network') {
          const field = networkField(e.offset);
          let bits = e.len * 8;
          let j = i + 1;
          const bw = exprs[j];
          if (bw?.type === 'bitwise') {
            bits = prefixLen(bw.mask);
            j++;
          }
          const c = exprs[j];
          if (c?.type === 'cmp') {
            const address = Buffer.alloc(field.size);
            c.data.copy(address);
            out.push(`${field.name} ${op(c.op)}${formatAddr(address)}${bits < field.size * 8 ? `/${bits}` : ''}`);
          } else if (c?.type === 'lookup') out.push(`${field.name} ${c.invert ? '!= ' : ''}${lookupText(c.set, sets)}`);
          else fail();
          i = j;
        } else fail();
        break;
      }
      case 'ct': {
        if (e.key === 'state' && next?.type === 'bitwise') {
          const mask = le32(next.mask);
          const names = CT_STATES.filter(([b]) => mask & b).map(([, n]) => n);
          out.push(`ct state ${names.join(',')}`);
          i += 2;
        } else if (e.key === 'mark' && next?.type === 'cmp') {
          out.push(`ct mark ${op(next.op)}${hex(le32(next.data))}`);
          i++;
        } else if (e.key === 'mark' && next?.type === 'meta_set') {
          out.push('meta mark set ct mark');
          i++;
        } else fail();
        break;
      }
      case 'immediate': {
        if (next?.type === 'redir') out.push(`redirect to :${e.data.readUInt16BE(0)}`);
        else if (next?.type === 'tproxy')
          out.push(
            `tproxy ${next.family === 'ip6' ? 'ip6 ' : next.family === 'ip' ? 'ip ' : ''}to :${e.data.readUInt16BE(0)}`,
          );
        else if (next?.type === 'meta_set' && next.key === 'mark') out.push(`meta mark set ${hex(le32(e.data))}`);
        else if (next?.type === 'ct_set' && next.key === 'zone') out.push(`ct zone set ${e.data.readUInt16LE(0)}`);
        else fail();
        i++;
        break;
      }
      case 'counter':
        out.push('counter');
        break;
      case 'verdict': {
        const v = e.verdict;
        out.push(v.code === 'jump' || v.code === 'goto' ? `${v.code} ${v.chain}` : v.code);
        break;
      }
      default:
        fail();
    }
  }
  return out.join(' ');
}

function elementText(s: NftSet): string[] {
  if (s.keyType === DATATYPE.inet_service) return s.elements.map((e) => String(e.key.readUInt16BE(0)));
  const out: string[] = [];
  for (let i = 0; i < s.elements.length; i++) {
    const start = s.elements[i]!;
    if (start.flags && start.flags & NFT_SET_ELEM_INTERVAL_END) continue;
    const end = s.elements[i + 1];
    const bits = s.keyLen * 8;
    if (!end || !(end.flags && end.flags & NFT_SET_ELEM_INTERVAL_END)) {
      out.push(`${formatAddr(start.key)}/${prefixLenOfRange(start.key, null, bits)}`);
      continue;
    }
    out.push(`${formatAddr(start.key)}/${prefixLenOfRange(start.key, end.key, bits)}`);
    i++;
  }
  return out;
}

/** The prefix length of [start, end) where end = start + 2^(bits-len); null end means "to the top". */
function prefixLenOfRange(start: Buffer, end: Buffer | null, bits: number): number {
  const a = BigInt(`0x${start.toString('hex')}`);
  const b = end ? BigInt(`0x${end.toString('hex')}`) : 1n << BigInt(bits);
  let size = b - a;
  let host = 0;
  while (size > 1n) {
    size >>= 1n;
    host++;
  }
  return bits - host;
}

function renderSet(s: NftSet): string {
  const type =
    s.keyType === DATATYPE.inet_service ? 'inet_service' : s.keyType === DATATYPE.ipv4_addr ? 'ipv4_addr' : 'ipv6_addr';
  const flags = s.flags & 0x4 ? '\t\tflags interval\n' : '';
  return `\tset ${s.name} {\n\t\ttype ${type}\n${flags}\t\telements = { ${elementText(s).join(', ')} }\n\t}\n`;
}

function renderChain(c: Chain, rules: Rule[], sets: ReadonlyMap<string, NftSet>): string {
  const lines = [`\tchain ${c.name} {`];
  if (c.base)
    lines.push(
      `\t\ttype ${c.base.type} hook ${c.base.hook} priority ${c.base.priority}; policy ${c.base.policy ?? 'accept'};`,
    );
  for (const r of rules) lines.push(`\t\t${renderExprs(r.exprs, sets)}`);
  lines.push('\t}');
  return lines.join('\n') + '\n';
}

/** Tables → `nft -f` text. */
export function renderNft(tables: readonly TableContents[]): string {
  return tables
    .map((t) => {
      const sets = new Map(t.sets.map((s) => [s.name, s]));
      const body = [
        ...t.sets.filter((s) => !(s.flags & SET_FLAGS.ANONYMOUS)).map(renderSet),
        ...t.chains.map((c) =>
          renderChain(
            c,
            t.rules.filter((r) => r.chain === c.name),
            sets,
          ),
        ),
      ].join('');
      return `table ${t.table.family} ${t.table.name} {\n${body}}\n`;
    })
    .join('');
}
