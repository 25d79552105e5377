// Redirect settings → the iptables rules istio-iptables writes, as data (IPv4 and, for dual stack,
// IPv6). Rule order follows tools/istio-iptables/pkg/capture/run.go as the CNI plug-in drives it
// (capture all DNS, no owner-group filter), of Istio 1.17.8 or of 1.30.3 (settings.istioRules);
// comments give the reasons and where the two releases differ.
import {
  BUILTIN_CHAINS,
  type XtFamily,
  type XtMatch,
  type XtRule,
  type XtRuleset,
  type XtTableName,
  type XtTarget,
} from '../nft/xtables/model.js';
import type { RedirectSettings } from './settings.js';

export const CHAINS = {
  inbound: 'ISTIO_INBOUND',
  redirect: 'ISTIO_REDIRECT',
  inRedirect: 'ISTIO_IN_REDIRECT',
  output: 'ISTIO_OUTPUT',
  divert: 'ISTIO_DIVERT',
  tproxy: 'ISTIO_TPROXY',
  /** 1.30: DNS capture rules, nat and raw. */
  outputDns: 'ISTIO_OUTPUT_DNS',
  /** 1.30: the drop-invalid rule's own chain. */
  drop: 'ISTIO_DROP',
} as const;

type Opts = Omit<XtRule, 'chain' | 'target'>;

/**
 * Collects rules per table and chain, keeping creation order of user chains. `-I CHAIN 1` goes to a
 * per-chain head (later inserts first), so thousands of inserts stay linear.
 */
class Builder {
  readonly tables = new Map<
    XtTableName,
    { chains: string[]; rules: Map<string, { head: XtRule[]; body: XtRule[] }> }
  >();

  constructor(readonly family: XtFamily) {}

  private chainRules(table: XtTableName, chain: string): { head: XtRule[]; body: XtRule[] } {
    let t = this.tables.get(table);
    if (!t) {
      t = { chains: [], rules: new Map() };
      this.tables.set(table, t);
    }
    let c = t.rules.get(chain);
    if (!c) {
      c = { head: [], body: [] };
      t.rules.set(chain, c);
      // Istio's builder creates each user chain when a rule first names it.
      if (!BUILTIN_CHAINS[table].includes(chain)) t.chains.push(chain);
    }
    return c;
  }

  append(table: XtTableName, chain: string, opts: Opts, target: XtTarget): void {
    this.chainRules(table, chain).body.push({ chain, ...opts, target });
  }

  /** `-I CHAIN 1`: ahead of everything in the chain so far. */
  insertFirst(table: XtTableName, chain: string, opts: Opts, target: XtTarget): void {
    this.chainRules(table, chain).head.push({ chain, ...opts, target });
  }

  ruleset(order: XtTableName[]): XtRuleset {
    return {
      family: this.family,
      tables: order.flatMap((name) => {
        const t = this.tables.get(name);
        if (!t) return [];
        const rules = [...t.rules.values()].flatMap((c) => [...[...c.head].reverse(), ...c.body]);
        return [{ name, chains: t.chains, rules }];
      }),
    };
  }
}

const tcp = { value: 'tcp' as const };
const udp = { value: 'udp' as const };
const RETURN: XtTarget = { kind: 'RETURN' };
const jump = (chain: string): XtTarget => ({ kind: 'jump', chain });
const dport = (proto: 'tcp' | 'udp', port: number, invert = false): XtMatch => ({
  kind: proto,
  dport: { value: port, ...(invert ? { invert } : {}) },
});
const sport = (proto: 'tcp' | 'udp', port: number): XtMatch => ({ kind: proto, sport: { value: port } });
const uidOwner = (uid: number, invert = false): XtMatch => ({
  kind: 'owner',
  uid: { value: uid, ...(invert ? { invert } : {}) },
});
const gidOwner = (gid: number, invert = false): XtMatch => ({
  kind: 'owner',
  gid: { value: gid, ...(invert ? { invert } : {}) },
});
const mark = (value: number, invert = false): XtMatch => ({
  kind: 'mark',
  mark: { value, ...(invert ? { invert } : {}) },
});

const isV6 = (cidr: string): boolean => cidr.includes(':');
const inFamily = (family: XtFamily, cidrs: readonly string[]): string[] =>
  cidrs.filter((c) => isV6(c) === (family === 'ip6'));

/**
 * Conntrack zones keep the two legs of a redirected UDP exchange apart: proxy ↔ upstream in zone 1,
 * app ↔ agent in zone 2. 1.17 writes them in raw OUTPUT and PREROUTING, 1.30 in chains of its own.
 */
function dnsZones(b: Builder, s: RedirectSettings, output: string, prerouting: string): void {
  for (const owner of [uidOwner(s.proxyUid), gidOwner(s.proxyGid)]) {
    b.append('raw', output, { protocol: udp, matches: [dport('udp', 53), owner] }, { kind: 'CT', zone: 1 });
    b.append('raw', output, { protocol: udp, matches: [sport('udp', s.dnsPort), owner] }, { kind: 'CT', zone: 2 });
  }
  if (prerouting !== 'PREROUTING') b.append('raw', 'PREROUTING', {}, jump(prerouting));
  b.append('raw', output, { protocol: udp, matches: [dport('udp', 53)] }, { kind: 'CT', zone: 2 });
  b.append('raw', prerouting, { protocol: udp, matches: [sport('udp', 53)] }, { kind: 'CT', zone: 1 });
}

/** One family's rules in the order Istio's capture/run.go (Run) writes them, CNI path. */
function buildFamily(s: RedirectSettings, family: XtFamily): XtRuleset {
  const b = new Builder(family);
  const v130 = s.istioRules === '1.30';
  const localhost = family === 'ip' ? '127.0.0.1/32' : '::1/128';
  const passthrough = family === 'ip' ? '127.0.0.6/32' : '::6/128';
  const tproxy = s.mode === 'TPROXY';
  const captureInbound = s.includeInboundPorts.all || s.includeInboundPorts.ports.length > 0;

  // Excluded interfaces bypass capture entirely: first in PREROUTING and OUTPUT (and mangle for TPROXY).
  for (const ifc of s.excludeInterfaces) {
    b.append('nat', 'PREROUTING', { inInterface: { value: ifc } }, RETURN);
    b.append('nat', 'OUTPUT', { outInterface: { value: ifc } }, RETURN);
  }
  if (tproxy) {
    for (const ifc of s.excludeInterfaces) {
      b.append('mangle', 'PREROUTING', { inInterface: { value: ifc } }, RETURN);
      b.append('mangle', 'OUTPUT', { outInterface: { value: ifc } }, RETURN);
    }
  }
  // Virtual (KubeVirt) interfaces are not the pod's own traffic: RETURN, each inserted at the top.
  for (const ifc of s.rerouteInterfaces) b.insertFirst('nat', 'PREROUTING', { inInterface: { value: ifc } }, RETURN);

  // Dropping out-of-window packets instead of letting them reset connections.
  // 1.30 drops through a chain of its own.
  if (s.dropInvalid) {
    const invalid: Opts = { matches: [{ kind: 'conntrack', ctstate: { value: ['INVALID'] } }] };
    if (v130) {
      b.append('mangle', 'PREROUTING', invalid, jump(CHAINS.drop));
      b.append('mangle', CHAINS.drop, {}, { kind: 'DROP' });
    } else {
      b.append('mangle', 'PREROUTING', invalid, { kind: 'DROP' });
    }
  }

  // The HBONE tunnel port is never captured; Istio writes this in nat whatever the mode and inbound list.
  b.append('nat', CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', s.inboundTunnelPort)] }, RETURN);
  b.append('nat', CHAINS.redirect, { protocol: tcp }, { kind: 'REDIRECT', toPort: s.proxyPort });
  b.append('nat', CHAINS.inRedirect, { protocol: tcp }, { kind: 'REDIRECT', toPort: s.inboundCapturePort });

  if (captureInbound) {
    const inboundTable: XtTableName = tproxy ? 'mangle' : 'nat';
    if (tproxy) {
      b.append('mangle', CHAINS.divert, {}, { kind: 'MARK', value: s.tproxyMark, mask: 0xffffffff });
      b.append('mangle', CHAINS.divert, {}, { kind: 'ACCEPT' });
      b.append(
        'mangle',
        CHAINS.tproxy,
        { destination: { value: localhost, invert: true }, protocol: tcp },
        {
          kind: 'TPROXY',
          onPort: s.inboundCapturePort,
          onIp: family === 'ip' ? '0.0.0.0' : '::',
          mark: s.tproxyMark,
          mask: 0xffffffff,
        },
      );
    }
    b.append(inboundTable, 'PREROUTING', { protocol: tcp }, jump(CHAINS.inbound));
    const established: XtMatch = { kind: 'conntrack', ctstate: { value: ['RELATED', 'ESTABLISHED'] } };
    if (s.includeInboundPorts.all) {
      for (const p of s.excludeInboundPorts)
        b.append(inboundTable, CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', p)] }, RETURN);
      if (tproxy) {
        // Packets of established connections go straight to the local socket; new ones to TPROXY.
        b.append('mangle', CHAINS.inbound, { protocol: tcp, matches: [established] }, jump(CHAINS.divert));
        b.append('mangle', CHAINS.inbound, { protocol: tcp }, jump(CHAINS.tproxy));
      } else {
        b.append('nat', CHAINS.inbound, { protocol: tcp }, jump(CHAINS.inRedirect));
      }
    } else {
      for (const p of s.includeInboundPorts.ports) {
        if (tproxy) {
          b.append(
            'mangle',
            CHAINS.inbound,
            { protocol: tcp, matches: [dport('tcp', p), established] },
            jump(CHAINS.divert),
          );
          b.append('mangle', CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', p)] }, jump(CHAINS.tproxy));
        } else {
          b.append('nat', CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', p)] }, jump(CHAINS.inRedirect));
        }
      }
    }
  }

  // Outbound: 1.17 sends only TCP into ISTIO_OUTPUT (DNS over UDP is handled in OUTPUT itself, below);
  // 1.30 sends every protocol, so an excluded outbound port is excluded for UDP too.
  b.append('nat', 'OUTPUT', v130 ? {} : { protocol: tcp }, jump(CHAINS.output));
  for (const p of s.excludeOutboundPorts) {
    b.append('nat', CHAINS.output, { protocol: tcp, matches: [dport('tcp', p)] }, RETURN);
    if (v130) b.append('nat', CHAINS.output, { protocol: udp, matches: [dport('udp', p)] }, RETURN);
  }
  // 127.0.0.6 / ::6 is where Envoy's inbound passthrough cluster connects from.
  b.append('nat', CHAINS.output, { source: { value: passthrough }, outInterface: { value: 'lo' } }, RETURN);

  // With DNS capture, TCP port 53 is left out of the loopback rules so it reaches the agent below.
  const notDns = { protocol: tcp, matches: [dport('tcp', 53, true)] };
  for (const kind of ['uid', 'gid'] as const) {
    const owner =
      kind === 'uid' ? (inv = false) => uidOwner(s.proxyUid, inv) : (inv = false) => gidOwner(s.proxyGid, inv);
    // App → VIP → Envoy (client) → Envoy (server) → app: the proxy's own calls over lo are inbound.
    // Both releases skip port 53 here for the uid only, not for the gid. 1.30 also never sends the
    // proxy's own HBONE connections (to the tunnel port) back to the inbound listener.
    const dnsSkip = s.dnsCapture && kind === 'uid';
    const tunnel = s.inboundTunnelPort;
    const skip130: XtMatch = dnsSkip
      ? { kind: 'multiport', direction: 'dports', ports: [53, tunnel], invert: true }
      : dport('tcp', tunnel, true);
    const skipPorts: XtMatch[] = v130 ? [skip130] : dnsSkip ? [dport('tcp', 53, true)] : [];
    const toLocal: Opts = { destination: { value: localhost, invert: true }, outInterface: { value: 'lo' } };
    const onlyTcp: Opts = skipPorts.length ? { protocol: tcp } : {};
    const inbound = jump(CHAINS.inRedirect);
    b.append('nat', CHAINS.output, { ...toLocal, ...onlyTcp, matches: [...skipPorts, owner()] }, inbound);
    // App → app over lo is not captured, unless some include range is a loopback address.
    if (!s.includeOutboundLoopback) {
      b.append(
        'nat',
        CHAINS.output,
        {
          outInterface: { value: 'lo' },
          ...(s.dnsCapture ? { ...notDns, matches: [...notDns.matches, owner(true)] } : { matches: [owner(true)] }),
        },
        RETURN,
      );
    }
    // Envoy's own outbound traffic is never redirected back to Envoy.
    b.append('nat', CHAINS.output, { matches: [owner()] }, RETURN);
  }
  // The CNI plug-in captures all DNS (no resolver list): TCP port 53 goes to the agent. 1.30 keeps all DNS
  // rules in ISTIO_OUTPUT_DNS; UDP reaches it through ISTIO_OUTPUT, past the proxy's owner RETURNs.
  const toAgent: XtTarget = { kind: 'REDIRECT', toPort: s.dnsPort };
  if (s.dnsCapture && v130) {
    b.append('raw', 'OUTPUT', {}, jump(CHAINS.outputDns));
    b.append('nat', CHAINS.output, {}, jump(CHAINS.outputDns));
    b.append('nat', CHAINS.outputDns, { protocol: tcp, matches: [dport('tcp', 53)] }, toAgent);
    b.append('nat', CHAINS.outputDns, { protocol: udp, matches: [dport('udp', 53)] }, toAgent);
    dnsZones(b, s, CHAINS.outputDns, CHAINS.inbound);
  } else if (s.dnsCapture) {
    b.append('nat', CHAINS.output, { protocol: tcp, matches: [dport('tcp', 53)] }, toAgent);
  }

  // Envoy-aware apps and container-to-container traffic use localhost.
  b.append('nat', CHAINS.output, { destination: { value: localhost } }, RETURN);
  for (const c of inFamily(family, s.excludeOutboundCidrs))
    b.append('nat', CHAINS.output, { destination: { value: c } }, RETURN);
  for (const p of s.includeOutboundPorts)
    b.append('nat', CHAINS.output, { protocol: tcp, matches: [dport('tcp', p)] }, jump(CHAINS.redirect));

  // Include CIDRs; reroute interfaces' traffic is sent to the outbound listener for the same ranges.
  if (s.includeOutboundCidrs.all) {
    b.append('nat', CHAINS.output, {}, jump(CHAINS.redirect));
    for (const ifc of s.rerouteInterfaces)
      b.insertFirst('nat', 'PREROUTING', { inInterface: { value: ifc } }, jump(CHAINS.redirect));
  } else {
    const cidrs = inFamily(family, s.includeOutboundCidrs.cidrs);
    for (const c of cidrs) {
      for (const ifc of s.rerouteInterfaces)
        b.insertFirst(
          'nat',
          'PREROUTING',
          { inInterface: { value: ifc }, destination: { value: c } },
          jump(CHAINS.redirect),
        );
      b.append('nat', CHAINS.output, { destination: { value: c } }, jump(CHAINS.redirect));
    }
    // Everything else leaves uncaptured (1.30 lets it fall off the end of the chain instead).
    if (cidrs.length > 0 && !v130) b.append('nat', CHAINS.output, {}, RETURN);
  }

  if (s.dnsCapture && !v130) {
    // UDP DNS, in nat OUTPUT directly: the agent's and Envoy's own queries go out untouched, the rest to the agent.
    b.append('nat', 'OUTPUT', { protocol: udp, matches: [dport('udp', 53), uidOwner(s.proxyUid)] }, RETURN);
    b.append('nat', 'OUTPUT', { protocol: udp, matches: [dport('udp', 53), gidOwner(s.proxyGid)] }, RETURN);
    b.append('nat', 'OUTPUT', { protocol: udp, matches: [dport('udp', 53)] }, { kind: 'REDIRECT', toPort: s.dnsPort });
    dnsZones(b, s, 'OUTPUT', 'PREROUTING');
  }

  if (tproxy) {
    // Save the mark Envoy's original_src filter sets, so replies route back through the proxy.
    b.append(
      'mangle',
      'PREROUTING',
      { protocol: tcp, matches: [mark(s.tproxyMark)] },
      { kind: 'CONNMARK', mode: 'save', nfmask: 0xffffffff, ctmask: 0xffffffff },
    );
    // Envoy → app packets already marked: leave them alone.
    b.append(
      'mangle',
      'OUTPUT',
      { protocol: tcp, outInterface: { value: 'lo' }, matches: [mark(s.tproxyMark)] },
      RETURN,
    );
    for (const owner of [uidOwner(s.proxyUid), gidOwner(s.proxyGid)]) {
      // App → VIP → Envoy outbound → (mark 1338) → Envoy inbound → app.
      b.append(
        'mangle',
        'OUTPUT',
        {
          destination: { value: localhost, invert: true },
          protocol: tcp,
          outInterface: { value: 'lo' },
          matches: [owner],
        },
        { kind: 'MARK', value: s.outboundMark, mask: 0xffffffff },
      );
    }
    // Workload replies take the policy route back to the proxy.
    b.append(
      'mangle',
      'OUTPUT',
      { protocol: tcp, matches: [{ kind: 'connmark', mark: { value: s.tproxyMark } }] },
      { kind: 'CONNMARK', mode: 'restore', nfmask: 0xffffffff, ctmask: 0xffffffff },
    );
    // Guards at the top of mangle ISTIO_INBOUND (Istio's -I 1, -I 2, -I 3, so inserted here in
    // reverse): no re-marking, no capture of the passthrough source, and app → app over lo is only
    // captured when Envoy's outbound marked it 1338.
    b.insertFirst(
      'mangle',
      CHAINS.inbound,
      { protocol: tcp, inInterface: { value: 'lo' }, matches: [mark(s.outboundMark, true)] },
      RETURN,
    );
    b.insertFirst(
      'mangle',
      CHAINS.inbound,
      { protocol: tcp, source: { value: passthrough }, inInterface: { value: 'lo' } },
      RETURN,
    );
    b.insertFirst('mangle', CHAINS.inbound, { protocol: tcp, matches: [mark(s.tproxyMark)] }, RETURN);
  }

  return b.ruleset(['raw', 'mangle', 'nat']);
}

/** IPv4 rules always; IPv6 rules when the pod is dual stack. */
export function buildIptables(s: RedirectSettings): { v4: XtRuleset; v6: XtRuleset | null } {
  return { v4: buildFamily(s, 'ip'), v6: s.dualStack ? buildFamily(s, 'ip6') : null };
}
