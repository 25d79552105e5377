// iptables rules as data → `iptables-restore` text, in the option order and number formats that
// `iptables-save` prints, so rendered text and the kernel's read-back can be compared line by line.
import { formatPrefix, parsePrefix } from '../addr.js';
import { BUILTIN_CHAINS, type CtState, type XtMatch, type XtRule, type XtRuleset, type XtTarget } from './model.js';

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`;
const not = (invert?: boolean): string => (invert ? '! ' : '');
const CT_ORDER: CtState[] = ['INVALID', 'NEW', 'RELATED', 'ESTABLISHED', 'UNTRACKED', 'SNAT', 'DNAT'];

function renderMatch(m: XtMatch): string {
  switch (m.kind) {
    case 'tcp':
    case 'udp': {
      const parts = [`-m ${m.kind}`];
      if (m.sport) parts.push(`${not(m.sport.invert)}--sport ${m.sport.value}`);
      if (m.dport) parts.push(`${not(m.dport.invert)}--dport ${m.dport.value}`);
      return parts.join(' ');
    }
    case 'multiport':
      return `-m multiport ${not(m.invert)}--${m.direction} ${m.ports.join(',')}`;
    case 'owner': {
      const parts = ['-m owner'];
      if (m.uid) parts.push(`${not(m.uid.invert)}--uid-owner ${m.uid.value}`);
      if (m.gid) parts.push(`${not(m.gid.invert)}--gid-owner ${m.gid.value}`);
      return parts.join(' ');
    }
    case 'conntrack': {
      const states = CT_ORDER.filter((s) => m.ctstate.value.includes(s));
      return `-m conntrack ${not(m.ctstate.invert)}--ctstate ${states.join(',')}`;
    }
    case 'mark':
    case 'connmark':
      return `-m ${m.kind} ${not(m.mark.invert)}--mark ${hex(m.mark.value)}${m.mask !== undefined && m.mask !== 0xffffffff ? `/${hex(m.mask)}` : ''}`;
    case 'socket':
      return `-m socket${m.transparent ? ' --transparent' : ''}`;
  }
}

function renderTarget(t: XtTarget): string {
  switch (t.kind) {
    case 'jump':
      return `-j ${t.chain}`;
    case 'goto':
      return `-g ${t.chain}`;
    case 'ACCEPT':
    case 'DROP':
    case 'RETURN':
      return `-j ${t.kind}`;
    case 'REDIRECT':
      return `-j REDIRECT --to-ports ${t.toPort}`;
    case 'TPROXY':
      return `-j TPROXY --on-port ${t.onPort} --on-ip ${t.onIp ?? '0.0.0.0'} --tproxy-mark ${hex(t.mark)}/${hex(t.mask)}`;
    case 'MARK':
      return `-j MARK --set-xmark ${hex(t.value)}/${hex(t.mask)}`;
    case 'CONNMARK':
      return `-j CONNMARK --${t.mode}-mark --nfmask ${hex(t.nfmask)} --ctmask ${hex(t.ctmask)}`;
    case 'CT':
      return `-j CT --zone ${t.zone}`;
  }
}

/** One rule as `iptables-save` prints it: `-A CHAIN -s -d -i -o -p -m … -j …`. */
export function renderRule(r: XtRule): string {
  const parts = [`-A ${r.chain}`];
  if (r.source) parts.push(`${not(r.source.invert)}-s ${formatPrefix(parsePrefix(r.source.value))}`);
  if (r.destination) parts.push(`${not(r.destination.invert)}-d ${formatPrefix(parsePrefix(r.destination.value))}`);
  if (r.inInterface) parts.push(`${not(r.inInterface.invert)}-i ${r.inInterface.value}`);
  if (r.outInterface) parts.push(`${not(r.outInterface.invert)}-o ${r.outInterface.value}`);
  if (r.protocol) parts.push(`${not(r.protocol.invert)}-p ${r.protocol.value}`);
  for (const m of r.matches ?? []) parts.push(renderMatch(m));
  parts.push(renderTarget(r.target));
  return parts.join(' ');
}

/** The whole ruleset as `iptables-restore` input (and as `iptables-save` would print it back). */
export function renderRestore(rs: XtRuleset): string {
  const lines: string[] = [];
  for (const t of rs.tables) {
    lines.push(`*${t.name}`);
    for (const c of BUILTIN_CHAINS[t.name]) lines.push(`:${c} ACCEPT [0:0]`);
    for (const c of t.chains) lines.push(`:${c} - [0:0]`);
    // iptables-save prints rules chain by chain: built-ins in hook order, then user chains.
    const order = [...BUILTIN_CHAINS[t.name], ...t.chains];
    const rank = (c: string): number => (order.indexOf(c) === -1 ? order.length : order.indexOf(c));
    const sorted = t.rules.map((r, i) => ({ r, i })).sort((a, b) => rank(a.r.chain) - rank(b.r.chain) || a.i - b.i);
    for (const { r } of sorted) lines.push(renderRule(r));
    lines.push('COMMIT');
  }
  return lines.join('\n') + '\n';
}
