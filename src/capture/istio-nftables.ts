// The `nft` layout of Istio 1.30.3: the rules its native nftables backend (tools/istio-nftables,
// capture/run.go) writes for a sidecar pod, in its order, with the expressions `nft` 1.0 makes of
// its rule text — so the kernel holds exactly what Istio's `nft -f` would have left. Pure.
import type { Chain, Expr, NftSet, Rule, TableContents, BaseChainHook } from '../nft/model.js';
import * as n from '../nft/native.js';
import { NFT_TABLES } from './nftables.js';
import type { RedirectSettings } from './settings.js';

type Proto = 'tcp' | 'udp';
type TableKey = 'nat' | 'mangle' | 'raw';

/** One word of Istio's rule text, in the order run.go writes them. */
type Term =
  | { t: 'l4proto'; proto: Proto }
  | { t: 'iifname' | 'oifname'; name: string; neq?: boolean }
  | { t: 'saddr' | 'daddr'; cidr: string; neq?: boolean }
  | { t: 'sport' | 'dport'; proto: Proto; ports: number[]; neq?: boolean }
  | { t: 'skuid' | 'skgid'; id: number; neq?: boolean }
  | { t: 'mark'; value: number; neq?: boolean }
  | { t: 'ctmark'; value: number }
  | { t: 'ctstate'; states: ('invalid' | 'established' | 'related')[] }
  | { t: 'counter' | 'return' | 'accept' | 'drop' | 'ctMarkSetMark' | 'markSetCtMark' }
  | { t: 'jump'; chain: string }
  | { t: 'redirect'; port: number }
  | { t: 'tproxy'; family: 4 | 6; port: number }
  | { t: 'markSet'; value: number }
  | { t: 'ctZone'; zone: number };

// Istio's rule words, so each rule below reads like the line run.go writes.
const tcp: Term = { t: 'l4proto', proto: 'tcp' };
const counter: Term = { t: 'counter' };
const ret: Term = { t: 'return' };
const accept: Term = { t: 'accept' };
const iif = (name: string, neq?: boolean): Term => ({ t: 'iifname', name, neq });
const oif = (name: string, neq?: boolean): Term => ({ t: 'oifname', name, neq });
const saddr = (cidr: string): Term => ({ t: 'saddr', cidr });
const daddr = (cidr: string, neq?: boolean): Term => ({ t: 'daddr', cidr, neq });
const dport = (proto: Proto, port: number | number[], neq?: boolean): Term => ({
  t: 'dport',
  proto,
  ports: typeof port === 'number' ? [port] : port,
  neq,
});
const sport = (proto: Proto, port: number): Term => ({ t: 'sport', proto, ports: [port] });
const skuid = (id: number, neq?: boolean): Term => ({ t: 'skuid', id, neq });
const skgid = (id: number, neq?: boolean): Term => ({ t: 'skgid', id, neq });
const mark = (value: number, neq?: boolean): Term => ({ t: 'mark', value, neq });
const jump = (chain: string): Term => ({ t: 'jump', chain });
const redirect = (port: number): Term => ({ t: 'redirect', port });
const ctZone = (zone: number): Term => ({ t: 'ctZone', zone });

const CH = {
  prerouting: 'prerouting',
  output: 'output',
  inbound: 'istio-inbound',
  istioOutput: 'istio-output',
  outputDns: 'istio-output-dns',
  redirect: 'istio-redirect',
  inRedirect: 'istio-in-redirect',
  divert: 'istio-divert',
  tproxy: 'istio-tproxy',
  drop: 'istio-drop',
} as const;

/** Each table's chains in the order run.go declares them (addIstio{Nat,Mangle,Raw}TableRules). */
const CHAINS: Record<TableKey, [string, BaseChainHook?][]> = {
  nat: [
    [CH.prerouting, { hook: 'prerouting', priority: -100, type: 'nat', policy: 'accept' }],
    [CH.output, { hook: 'output', priority: -100, type: 'nat', policy: 'accept' }],
    [CH.inbound],
    [CH.redirect],
    [CH.inRedirect],
    [CH.istioOutput],
    [CH.outputDns],
  ],
  mangle: [
    [CH.prerouting, { hook: 'prerouting', priority: -150, type: 'filter', policy: 'accept' }],
    [CH.output, { hook: 'output', priority: -150, type: 'route', policy: 'accept' }],
    [CH.divert],
    [CH.tproxy],
    [CH.inbound],
    [CH.drop],
  ],
  raw: [
    [CH.prerouting, { hook: 'prerouting', priority: -300, type: 'filter', policy: 'accept' }],
    [CH.output, { hook: 'output', priority: -300, type: 'filter', policy: 'accept' }],
    [CH.inbound],
    [CH.outputDns],
  ],
};

/** One table's rules as Istio's transaction leaves them: appends, and inserts at an index. */
class TableRules {
  readonly chains = new Map<string, Rule[]>();
  readonly sets: NftSet[] = [];
  constructor(
    readonly name: string,
    private readonly nextSetId: () => number,
  ) {}

  append(chain: string, terms: Term[]): void {
    this.rulesOf(chain).push(this.encode(chain, terms));
  }

  /**
   * `insert rule … index N`. As run.go's addIstioTableRules does, an insert into an empty chain or
   * at an index past its last rule becomes an append; otherwise the rule takes position N.
   */
  insert(chain: string, index: number, terms: Term[]): void {
    const rules = this.rulesOf(chain);
    const rule = this.encode(chain, terms);
    if (index >= rules.length) rules.push(rule);
    else rules.splice(index, 0, rule);
  }

  private rulesOf(chain: string): Rule[] {
    let r = this.chains.get(chain);
    if (!r) this.chains.set(chain, (r = []));
    return r;
  }

  /**
   * Rule text → expressions as nft makes them: `meta nfproto` goes in front of the first `ip`/`ip6`
   * selector (or `tproxy`) of a family not yet established, `meta l4proto` in front of a port
   * selector whose protocol no earlier word established.
   */
  private encode(chain: string, terms: Term[]): Rule {
    const exprs: Expr[] = [];
    let nf: 4 | 6 | undefined;
    let l4: Proto | undefined;
    const family = (f: 4 | 6): void => {
      if (nf !== f) exprs.push(...n.nfproto(f));
      nf = f;
    };
    for (const x of terms) {
      switch (x.t) {
        case 'l4proto':
          exprs.push(...n.l4proto(x.proto));
          l4 = x.proto;
          break;
        case 'iifname':
        case 'oifname':
          exprs.push(...n.ifname(x.t, x.name, x.neq));
          break;
        case 'saddr':
        case 'daddr':
          family(x.cidr.includes(':') ? 6 : 4);
          exprs.push(...n.prefixMatch(x.t, x.cidr, x.neq));
          break;
        case 'sport':
        case 'dport': {
          if (l4 !== x.proto) exprs.push(...n.l4proto(x.proto));
          l4 = x.proto;
          if (x.ports.length === 1) {
            exprs.push(...n.port(x.t, x.ports[0]!, x.neq));
          } else {
            const id = this.nextSetId();
            const set = n.anonymousPortSet('inet', this.name, `__set${this.sets.length}`, x.ports, id);
            this.sets.push(set);
            exprs.push(...n.portInSet(x.t, set, x.neq));
          }
          break;
        }
        case 'skuid':
        case 'skgid':
          exprs.push(...n.sk(x.t, x.id, x.neq));
          break;
        case 'mark':
          exprs.push(...n.markIs(x.value, x.neq));
          break;
        case 'ctmark':
          exprs.push(...n.ctMarkIs(x.value));
          break;
        case 'ctstate':
          exprs.push(...n.ctState(x.states));
          break;
        case 'counter':
          exprs.push(n.counter());
          break;
        case 'return':
          exprs.push(n.ret());
          break;
        case 'accept':
          exprs.push(n.accept());
          break;
        case 'drop':
          exprs.push(n.drop());
          break;
        case 'jump':
          exprs.push(n.jump(x.chain));
          break;
        case 'redirect':
          exprs.push(...n.redirectTo(x.port));
          break;
        case 'tproxy':
          family(x.family);
          exprs.push(...n.tproxyTo(x.family === 6 ? 'ip6' : 'ip', x.port));
          break;
        case 'markSet':
          exprs.push(...n.setMark(x.value));
          break;
        case 'ctMarkSetMark':
          exprs.push(...n.saveMarkToCt());
          break;
        case 'markSetCtMark':
          exprs.push(...n.restoreMarkFromCt());
          break;
        case 'ctZone':
          exprs.push(...n.setCtZone(x.zone));
          break;
      }
    }
    return { family: 'inet', table: this.name, chain, exprs };
  }
}

const isV6 = (cidr: string): boolean => cidr.includes(':');

/**
 * Redirect settings → Istio 1.30.3's native nftables tables, as its CNI plug-in drives run.go:
 * DNS capture is capture-all (no resolver list), one proxy uid and gid, no owner-group filter,
 * IPv6 rules only where Istio's EnableIPv6 would be set (settings.dualStack). Rules without an address apply to both
 * families in the inet tables, as Istio's do.
 */
export function buildIstioNftTables(s: RedirectSettings): TableContents[] {
  let setIds = 0;
  const nextSetId = (): number => ++setIds;
  const nat = new TableRules(NFT_TABLES.nat, nextSetId);
  const mangle = new TableRules(NFT_TABLES.mangle, nextSetId);
  const raw = new TableRules(NFT_TABLES.raw, nextSetId);
  const v6 = s.dualStack;
  const tproxy = s.mode === 'TPROXY';
  const dns = s.dnsCapture;
  const uid = s.proxyUid;
  const gid = s.proxyGid;
  const LO4 = '127.0.0.1/32';
  const LO6 = '::1/128';
  const v4Of = (cidrs: readonly string[]): string[] => cidrs.filter((c) => !isV6(c));
  const v6Of = (cidrs: readonly string[]): string[] => (v6 ? cidrs.filter(isV6) : []);

  // Excluded interfaces bypass capture: nat, and mangle too for TPROXY.
  for (const ifc of s.excludeInterfaces) {
    nat.append(CH.prerouting, [iif(ifc), counter, ret]);
    nat.append(CH.output, [oif(ifc), counter, ret]);
  }
  if (tproxy) {
    for (const ifc of s.excludeInterfaces) {
      mangle.append(CH.prerouting, [iif(ifc), counter, ret]);
      mangle.append(CH.output, [oif(ifc), counter, ret]);
    }
  }
  // Virtual (KubeVirt) interfaces: each inserted at the head of nat prerouting.
  for (const ifc of s.rerouteInterfaces) nat.insert(CH.prerouting, 0, [iif(ifc), counter, ret]);

  if (s.dropInvalid) {
    mangle.append(CH.prerouting, [tcp, { t: 'ctstate', states: ['invalid'] }, counter, jump(CH.drop)]);
    mangle.append(CH.drop, [counter, { t: 'drop' }]);
  }

  nat.append(CH.inbound, [tcp, dport('tcp', s.inboundTunnelPort), counter, ret]);
  nat.append(CH.redirect, [tcp, counter, redirect(s.proxyPort)]);
  nat.append(CH.inRedirect, [tcp, counter, redirect(s.inboundCapturePort)]);

  const inbound = s.includeInboundPorts;
  const captureInbound = inbound.all || inbound.ports.length > 0;
  const established: Term = { t: 'ctstate', states: ['related', 'established'] };
  if (captureInbound && tproxy) {
    mangle.append(CH.divert, [counter, { t: 'markSet', value: s.tproxyMark }]);
    mangle.append(CH.divert, [counter, accept]);
    const toProxy = (f: 4 | 6): Term[] => [
      tcp,
      daddr(f === 4 ? LO4 : LO6, true),
      { t: 'tproxy', family: f, port: s.inboundCapturePort },
      { t: 'markSet', value: s.tproxyMark },
      counter,
      accept,
    ];
    mangle.append(CH.tproxy, toProxy(4));
    if (v6) mangle.append(CH.tproxy, toProxy(6));
    mangle.append(CH.prerouting, [tcp, counter, jump(CH.inbound)]);
    if (inbound.all) {
      for (const p of s.excludeInboundPorts) mangle.append(CH.inbound, [tcp, dport('tcp', p), counter, ret]);
      mangle.append(CH.inbound, [tcp, established, counter, jump(CH.divert)]);
      mangle.append(CH.inbound, [tcp, counter, jump(CH.tproxy)]);
    } else {
      for (const p of inbound.ports) {
        mangle.append(CH.inbound, [tcp, established, dport('tcp', p), counter, jump(CH.divert)]);
        mangle.append(CH.inbound, [tcp, dport('tcp', p), counter, jump(CH.tproxy)]);
      }
    }
  } else if (captureInbound) {
    nat.append(CH.prerouting, [tcp, counter, jump(CH.inbound)]);
    if (inbound.all) {
      for (const p of s.excludeInboundPorts) nat.append(CH.inbound, [tcp, dport('tcp', p), counter, ret]);
      nat.append(CH.inbound, [tcp, counter, jump(CH.inRedirect)]);
    } else {
      for (const p of inbound.ports) nat.append(CH.inbound, [tcp, dport('tcp', p), counter, jump(CH.inRedirect)]);
    }
  }

  nat.append(CH.output, [counter, jump(CH.istioOutput)]);
  for (const p of s.excludeOutboundPorts) {
    nat.append(CH.istioOutput, [dport('tcp', p), counter, ret]);
    nat.append(CH.istioOutput, [dport('udp', p), counter, ret]);
  }
  // 127.0.0.6 / ::6: where Envoy's inbound passthrough cluster connects from.
  nat.append(CH.istioOutput, [oif('lo'), saddr('127.0.0.6/32'), counter, ret]);
  if (v6) nat.append(CH.istioOutput, [oif('lo'), saddr('::6/128'), counter, ret]);

  // The proxy's calls over lo go to the inbound listener (never its HBONE port, nor DNS for the
  // uid when DNS is captured); other lo traffic is not captured unless an include range is a
  // loopback address; the proxy's own outbound is never captured.
  for (const [owner, id] of [
    [skuid, uid],
    [skgid, gid],
  ] as const) {
    const skip = dns && owner === skuid ? [53, s.inboundTunnelPort] : s.inboundTunnelPort;
    nat.append(CH.istioOutput, [
      oif('lo'),
      tcp,
      daddr(LO4, true),
      dport('tcp', skip, true),
      owner(id),
      counter,
      jump(CH.inRedirect),
    ]);
    if (v6)
      nat.append(CH.istioOutput, [
        oif('lo'),
        tcp,
        daddr(LO6, true),
        dport('tcp', skip, true),
        owner(id),
        counter,
        jump(CH.inRedirect),
      ]);
    if (!s.includeOutboundLoopback) {
      nat.append(
        CH.istioOutput,
        dns
          ? [oif('lo'), tcp, dport('tcp', 53, true), owner(id, true), counter, ret]
          : [oif('lo'), owner(id, true), counter, ret],
      );
    }
    nat.append(CH.istioOutput, [owner(id), counter, ret]);
  }

  if (dns) {
    raw.append(CH.output, [counter, jump(CH.outputDns)]);
    nat.append(CH.istioOutput, [counter, jump(CH.outputDns)]);
    nat.append(CH.outputDns, [tcp, dport('tcp', 53), counter, redirect(s.dnsPort)]);
    nat.append(CH.outputDns, [dport('udp', 53), counter, redirect(s.dnsPort)]);
    // Conntrack zones: proxy ↔ upstream resolvers in zone 1, app ↔ agent in zone 2.
    for (const [owner, id] of [
      [skuid, uid],
      [skgid, gid],
    ] as const) {
      raw.append(CH.outputDns, [dport('udp', 53), owner(id), counter, ctZone(1)]);
      raw.append(CH.outputDns, [sport('udp', s.dnsPort), owner(id), counter, ctZone(2)]);
    }
    raw.append(CH.prerouting, [counter, jump(CH.inbound)]);
    raw.append(CH.outputDns, [dport('udp', 53), counter, ctZone(2)]);
    raw.append(CH.inbound, [sport('udp', 53), counter, ctZone(1)]);
  }

  nat.append(CH.istioOutput, [daddr(LO4), counter, ret]);
  if (v6) nat.append(CH.istioOutput, [daddr(LO6), counter, ret]);
  for (const c of v4Of(s.excludeOutboundCidrs)) nat.append(CH.istioOutput, [daddr(c), counter, ret]);
  for (const c of v6Of(s.excludeOutboundCidrs)) nat.append(CH.istioOutput, [daddr(c), counter, ret]);
  for (const p of s.includeOutboundPorts) nat.append(CH.istioOutput, [dport('tcp', p), counter, jump(CH.redirect)]);

  if (s.includeOutboundCidrs.all) {
    nat.append(CH.istioOutput, [counter, jump(CH.redirect)]);
    for (const ifc of s.rerouteInterfaces) nat.insert(CH.prerouting, 0, [iif(ifc), counter, jump(CH.redirect)]);
  } else {
    const cidrs = s.includeOutboundCidrs.cidrs;
    for (const c of [...v4Of(cidrs), ...v6Of(cidrs)]) {
      for (const ifc of s.rerouteInterfaces)
        nat.insert(CH.prerouting, 0, [iif(ifc), daddr(c), counter, jump(CH.redirect)]);
      nat.append(CH.istioOutput, [daddr(c), counter, jump(CH.redirect)]);
    }
  }

  if (tproxy) {
    // Save the mark Envoy's original_src sets; leave marked Envoy → app packets alone; mark the
    // proxy's lo traffic to the pod IP 1338; replies of marked connections take the proxy's route.
    mangle.append(CH.prerouting, [tcp, mark(s.tproxyMark), counter, { t: 'ctMarkSetMark' }]);
    mangle.append(CH.output, [oif('lo'), tcp, mark(s.tproxyMark), counter, ret]);
    for (const [owner, id] of [
      [skuid, uid],
      [skgid, gid],
    ] as const) {
      const toPod = (lo: string): Term[] => [
        oif('lo'),
        tcp,
        daddr(lo, true),
        owner(id),
        counter,
        { t: 'markSet', value: s.outboundMark },
      ];
      mangle.append(CH.output, toPod(LO4));
      if (v6) mangle.append(CH.output, toPod(LO6));
    }
    mangle.append(CH.output, [tcp, { t: 'ctmark', value: s.tproxyMark }, counter, { t: 'markSetCtMark' }]);
    // Guards at the head of mangle istio-inbound, at run.go's indexes 0, 1, 1 (IPv6), 2.
    mangle.insert(CH.inbound, 0, [tcp, mark(s.tproxyMark), counter, ret]);
    mangle.insert(CH.inbound, 1, [iif('lo'), tcp, saddr('127.0.0.6/32'), counter, ret]);
    if (v6) mangle.insert(CH.inbound, 1, [iif('lo'), tcp, saddr('::6/128'), counter, ret]);
    mangle.insert(CH.inbound, 2, [iif('lo'), tcp, mark(s.outboundMark, true), counter, ret]);
  }

  const out: TableContents[] = [];
  for (const [key, t] of [
    ['nat', nat],
    ['mangle', mangle],
    ['raw', raw],
  ] as const) {
    // Only chains with rules are created; a table with none is left out.
    const chains: Chain[] = CHAINS[key]
      .filter(([name]) => (t.chains.get(name)?.length ?? 0) > 0)
      .map(([name, base]) => ({ family: 'inet', table: t.name, name, ...(base ? { base } : {}) }));
    if (chains.length === 0) continue;
    out.push({
      table: { family: 'inet', name: t.name },
      chains,
      sets: t.sets,
      rules: chains.flatMap((c) => t.chains.get(c.name)!),
    });
  }
  return out;
}
