// `iptables-restore` / `iptables-save` text → iptables rules as data, for the vocabulary of model.ts.
// Used to take the oracle's own text (fixtures, golden files) straight into the encoder.
import {
  BUILTIN_CHAINS,
  type CtState,
  type XtFamily,
  type XtMatch,
  type XtRule,
  type XtRuleset,
  type XtTable,
  type XtTableName,
  type XtTarget,
} from './model.js';

export class XtParseError extends Error {
  constructor(
    readonly line: number,
    readonly text: string,
    reason: string,
  ) {
    super(`line ${line}: ${reason}: ${text}`);
    this.name = 'XtParseError';
  }
}

const TABLES: readonly XtTableName[] = ['nat', 'mangle', 'raw', 'filter'];

function num(s: string | undefined, what: string): number {
  if (s === undefined || !/^(0x[0-9a-fA-F]+|\d+)$/.test(s)) throw new Error(`${what} needs a number, got '${s ?? ''}'`);
  return Number(s);
}

function valueMask(s: string | undefined, what: string): { value: number; mask?: number } {
  const [v, m] = (s ?? '').split('/');
  return m === undefined ? { value: num(v, what) } : { value: num(v, what), mask: num(m, what) };
}

/** Parses the words after `-A CHAIN`. */
function parseRuleArgs(chain: string, words: string[]): XtRule {
  const rule: XtRule = { chain, target: { kind: 'RETURN' } };
  const matches: XtMatch[] = [];
  let target: XtTarget | undefined;
  let current: XtMatch | undefined;
  let i = 0;
  const next = (what: string): string => {
    const w = words[i++];
    if (w === undefined) throw new Error(`${what} needs a value`);
    return w;
  };
  while (i < words.length) {
    let invert = false;
    if (words[i] === '!') {
      invert = true;
      i++;
    }
    const opt = next('rule');
    const neg = invert ? { invert: true } : {};
    switch (opt) {
      case '-p':
      case '--protocol': {
        const p = next(opt);
        if (p !== 'tcp' && p !== 'udp') throw new Error(`protocol '${p}' is not supported`);
        rule.protocol = { value: p, ...neg };
        break;
      }
      case '-s':
      case '--source':
        rule.source = { value: next(opt), ...neg };
        break;
      case '-d':
      case '--destination':
        rule.destination = { value: next(opt), ...neg };
        break;
      case '-i':
      case '--in-interface':
        rule.inInterface = { value: next(opt), ...neg };
        break;
      case '-o':
      case '--out-interface':
        rule.outInterface = { value: next(opt), ...neg };
        break;
      case '-m':
      case '--match':
        current = newMatch(next(opt));
        matches.push(current);
        break;
      case '--dport':
      case '--sport':
      case '--destination-port':
      case '--source-port': {
        // `-p tcp --dport N` implies `-m tcp`.
        if (!current || (current.kind !== 'tcp' && current.kind !== 'udp')) {
          if (!rule.protocol) throw new Error(`${opt} needs -p tcp or -p udp`);
          current = { kind: rule.protocol.value };
          matches.push(current);
        }
        const port = { value: num(next(opt), opt), ...neg };
        if (opt.startsWith('--d')) current.dport = port;
        else current.sport = port;
        break;
      }
      case '--dports':
      case '--sports':
      case '--destination-ports':
      case '--source-ports': {
        if (current?.kind !== 'multiport') throw new Error(`${opt} needs -m multiport`);
        current.direction = opt.startsWith('--d') ? 'dports' : 'sports';
        current.ports = next(opt)
          .split(',')
          .map((p) => num(p, opt));
        if (invert) current.invert = true;
        break;
      }
      case '--uid-owner':
      case '--gid-owner': {
        if (current?.kind !== 'owner') throw new Error(`${opt} needs -m owner`);
        const id = { value: num(next(opt), opt), ...neg };
        if (opt === '--uid-owner') current.uid = id;
        else current.gid = id;
        break;
      }
      case '--ctstate': {
        if (current?.kind !== 'conntrack') throw new Error(`${opt} needs -m conntrack`);
        current.ctstate = { value: next(opt).split(',') as CtState[], ...neg };
        break;
      }
      case '--mark': {
        if (current?.kind === 'mark' || current?.kind === 'connmark') {
          const vm = valueMask(next(opt), opt);
          current.mark = { value: vm.value, ...neg };
          if (vm.mask !== undefined) current.mask = vm.mask;
        } else throw new Error(`${opt} needs -m mark or -m connmark`);
        break;
      }
      case '--transparent': {
        if (current?.kind !== 'socket') throw new Error(`${opt} needs -m socket`);
        current.transparent = true;
        break;
      }
      case '-j':
      case '--jump':
      case '-g':
      case '--goto':
        target = parseTarget(opt, next(opt), words.slice(i));
        i = words.length;
        break;
      default:
        throw new Error(`option '${opt}' is not supported`);
    }
  }
  if (!target) throw new Error('rule has no target (-j)');
  rule.target = target;
  if (matches.length > 0) rule.matches = matches;
  return rule;
}

function newMatch(name: string): XtMatch {
  switch (name) {
    case 'tcp':
    case 'udp':
      return { kind: name };
    case 'multiport':
      return { kind: 'multiport', direction: 'dports', ports: [] };
    case 'owner':
      return { kind: 'owner' };
    case 'conntrack':
      return { kind: 'conntrack', ctstate: { value: [] } };
    case 'mark':
    case 'connmark':
      return { kind: name, mark: { value: 0 } };
    case 'socket':
      return { kind: 'socket' };
    default:
      throw new Error(`match '${name}' is not supported`);
  }
}

function parseTarget(opt: string, name: string, rest: string[]): XtTarget {
  const opts = new Map<string, string>();
  for (let i = 0; i < rest.length; i++) {
    const k = rest[i]!;
    if (!k.startsWith('--')) throw new Error(`unexpected '${k}' after -j ${name}`);
    const v = rest[i + 1];
    if (v !== undefined && !v.startsWith('--')) {
      opts.set(k, v);
      i++;
    } else opts.set(k, '');
  }
  const only = (...allowed: string[]): void => {
    for (const k of opts.keys()) if (!allowed.includes(k)) throw new Error(`-j ${name} does not take ${k}`);
  };
  if (opt === '-g' || opt === '--goto') {
    only();
    return { kind: 'goto', chain: name };
  }
  switch (name) {
    case 'ACCEPT':
    case 'DROP':
    case 'RETURN':
      only();
      return { kind: name };
    case 'REDIRECT':
      only('--to-ports');
      return { kind: 'REDIRECT', toPort: num(opts.get('--to-ports'), '--to-ports') };
    case 'TPROXY': {
      only('--on-port', '--on-ip', '--tproxy-mark');
      const m = valueMask(opts.get('--tproxy-mark') ?? '0', '--tproxy-mark');
      const onIp = opts.get('--on-ip');
      return {
        kind: 'TPROXY',
        onPort: num(opts.get('--on-port'), '--on-port'),
        ...(onIp !== undefined ? { onIp } : {}),
        mark: m.value,
        mask: m.mask ?? 0xffffffff,
      };
    }
    case 'MARK': {
      only('--set-xmark', '--set-mark');
      const m = valueMask(opts.get('--set-xmark') ?? opts.get('--set-mark'), '--set-xmark');
      return { kind: 'MARK', value: m.value, mask: m.mask ?? 0xffffffff };
    }
    case 'CONNMARK': {
      only('--save-mark', '--restore-mark', '--nfmask', '--ctmask', '--mask');
      const mode = opts.has('--save-mark') ? 'save' : opts.has('--restore-mark') ? 'restore' : undefined;
      if (!mode) throw new Error('-j CONNMARK needs --save-mark or --restore-mark');
      const mask = opts.has('--mask') ? num(opts.get('--mask'), '--mask') : 0xffffffff;
      return {
        kind: 'CONNMARK',
        mode,
        nfmask: opts.has('--nfmask') ? num(opts.get('--nfmask'), '--nfmask') : mask,
        ctmask: opts.has('--ctmask') ? num(opts.get('--ctmask'), '--ctmask') : mask,
      };
    }
    case 'CT':
      only('--zone');
      return { kind: 'CT', zone: num(opts.get('--zone'), '--zone') };
    default:
      // Anything else is a user chain; the encoder refuses jumps to chains the table does not declare.
      only();
      return { kind: 'jump', chain: name };
  }
}

/** Parses restore text for one family. Built-in chain declarations are implied; user chains are kept in order. */
export function parseRestore(text: string, family: XtFamily): XtRuleset {
  const tables: XtTable[] = [];
  let table: XtTable | undefined;
  text.split('\n').forEach((raw, idx) => {
    const line = raw.trim();
    const lineNo = idx + 1;
    if (line === '' || line.startsWith('#')) return;
    try {
      if (line.startsWith('*')) {
        const name = line.slice(1) as XtTableName;
        if (!TABLES.includes(name)) throw new Error(`table '${name}' is not supported`);
        table = { name, chains: [], rules: [] };
        tables.push(table);
        return;
      }
      if (!table) throw new Error('line outside a *table section');
      if (line === 'COMMIT') {
        table = undefined;
        return;
      }
      if (line.startsWith(':')) {
        const name = line.slice(1).split(/\s+/)[0]!;
        if (!BUILTIN_CHAINS[table.name].includes(name)) table.chains.push(name);
        return;
      }
      const words = line.split(/\s+/);
      if (words[0] !== '-A' || words[1] === undefined) throw new Error('expected -A CHAIN');
      table.rules.push(parseRuleArgs(words[1], words.slice(2)));
    } catch (e) {
      throw new XtParseError(lineNo, raw, (e as Error).message);
    }
  });
  if (table) throw new XtParseError(text.split('\n').length, '', `table ${table.name} has no COMMIT`);
  return { family, tables };
}
