// Redirect settings → the iptables rules istio-iptables writes, as data (IPv4 and, for dual stack,
// IPv6). Rule order follows shared/istio-redirect-spec.md §3 exactly; comments give the reasons.
import { parsePrefix } from '../nft/addr.js';
import type { XtFamily, XtMatch, XtRule, XtRuleset, XtTable, XtTableName, XtTarget } from '../nft/xtables/model.js';
import type { RedirectSettings } from './settings.js';

export const CHAINS = {
  inbound: 'ISTIO_INBOUND',
  redirect: 'ISTIO_REDIRECT',
  inRedirect: 'ISTIO_IN_REDIRECT',
  output: 'ISTIO_OUTPUT',
  outputDns: 'ISTIO_OUTPUT_DNS',
  divert: 'ISTIO_DIVERT',
  tproxy: 'ISTIO_TPROXY',
} as const;

type Opts = Omit<XtRule, 'chain' | 'target'>;

/** Collects rules per table, keeping creation order of user chains. */
class Builder {
  readonly tables = new Map<XtTableName, XtTable>();

  constructor(readonly family: XtFamily) {}

  private table(name: XtTableName): XtTable {
    let t = this.tables.get(name);
    if (!t) {
      t = { name, chains: [], rules: [] };
      this.tables.set(name, t);
    }
    return t;
  }

  chain(table: XtTableName, name: string): void {
    const t = this.table(table);
    if (!t.chains.includes(name)) t.chains.push(name);
  }

  append(table: XtTableName, chain: string, opts: Opts, target: XtTarget): void {
    this.table(table).rules.push({ chain, ...opts, target });
  }

  /** `-I CHAIN pos` (1-based) among the rules of that chain. */
  insert(table: XtTableName, chain: string, pos: number, opts: Opts, target: XtTarget): void {
    const t = this.table(table);
    const idx: number[] = [];
    t.rules.forEach((r, i) => r.chain === chain && idx.push(i));
    const at = pos - 1 < idx.length ? idx[pos - 1]! : idx.length > 0 ? idx[idx.length - 1]! + 1 : t.rules.length;
    t.rules.splice(at, 0, { chain, ...opts, target });
  }

  ruleset(order: XtTableName[]): XtRuleset {
    return { family: this.family, tables: order.flatMap((n) => (this.tables.has(n) ? [this.tables.get(n)!] : [])) };
  }
}

const tcp = { value: 'tcp' as const };
const udp = { value: 'udp' as const };
const RETURN: XtTarget = { kind: 'RETURN' };
const jump = (chain: string): XtTarget => ({ kind: 'jump', chain });
const dport = (proto: 'tcp' | 'udp', port: number, invert = false): XtMatch => ({ kind: proto, dport: { value: port, ...(invert ? { invert } : {}) } });
const sport = (proto: 'tcp' | 'udp', port: number): XtMatch => ({ kind: proto, sport: { value: port } });
const uidOwner = (uid: number, invert = false): XtMatch => ({ kind: 'owner', uid: { value: uid, ...(invert ? { invert } : {}) } });
const gidOwner = (gid: number, invert = false): XtMatch => ({ kind: 'owner', gid: { value: gid, ...(invert ? { invert } : {}) } });

const isV6 = (cidr: string): boolean => cidr.includes(':');
const inFamily = (family: XtFamily, cidrs: readonly string[]): string[] => cidrs.filter((c) => isV6(c) === (family === 'ip6'));

/** Whether any CIDR contains the family's loopback address (127.0.0.1 or ::1). */
function includesLoopback(family: XtFamily, cidrs: readonly string[]): boolean {
  const lo = parsePrefix(family === 'ip' ? '127.0.0.1/32' : '::1/128');
  return inFamily(family, cidrs).some((c) => {
    const p = parsePrefix(c);
    for (let i = 0; i < p.addr.length; i++) if ((lo.addr[i]! & p.mask[i]!) !== p.addr[i]) return false;
    return true;
  });
}

function buildFamily(s: RedirectSettings, family: XtFamily): XtRuleset {
  const b = new Builder(family);
  const localhost = family === 'ip' ? '127.0.0.1/32' : '::1/128';
  const passthrough = family === 'ip' ? '127.0.0.6/32' : '::6/128';
  const tproxy = s.mode === 'TPROXY';
  const inboundTable: XtTableName = tproxy ? 'mangle' : 'nat';
  const captureInbound = s.includeInboundPorts.all || s.includeInboundPorts.ports.length > 0;

  // Chains, in the order istio-iptables creates them (iptables-nft-save lists them in this order).
  if (tproxy && captureInbound) {
    b.chain('mangle', CHAINS.divert);
    b.chain('mangle', CHAINS.tproxy);
    b.chain('mangle', CHAINS.inbound);
  }
  if (!tproxy && captureInbound) b.chain('nat', CHAINS.inbound);
  b.chain('nat', CHAINS.redirect);
  b.chain('nat', CHAINS.inRedirect);
  b.chain('nat', CHAINS.output);
  if (s.dnsCapture) b.chain('nat', CHAINS.outputDns);

  // Dropping out-of-window packets instead of letting them reset connections.
  if (s.dropInvalid) b.append('mangle', 'PREROUTING', { matches: [{ kind: 'conntrack', ctstate: { value: ['INVALID'] } }] }, { kind: 'DROP' });

  // Excluded interfaces bypass capture entirely: first in PREROUTING and OUTPUT.
  for (const ifc of s.excludeInterfaces) {
    if (tproxy) b.append('mangle', 'PREROUTING', { inInterface: { value: ifc } }, RETURN);
    b.append('nat', 'PREROUTING', { inInterface: { value: ifc } }, RETURN);
    b.append('nat', 'OUTPUT', { outInterface: { value: ifc } }, RETURN);
  }

  if (tproxy && captureInbound) {
    b.append('mangle', CHAINS.divert, {}, { kind: 'MARK', value: s.tproxyMark, mask: 0xffffffff });
    b.append('mangle', CHAINS.divert, {}, { kind: 'ACCEPT' });
    b.append('mangle', CHAINS.tproxy, { destination: { value: localhost, invert: true }, protocol: tcp }, {
      kind: 'TPROXY',
      onPort: s.inboundCapturePort,
      onIp: family === 'ip' ? '0.0.0.0' : '::',
      mark: s.tproxyMark,
      mask: 0xffffffff,
    });
  }

  b.append('nat', CHAINS.redirect, { protocol: tcp }, { kind: 'REDIRECT', toPort: s.proxyPort });
  b.append('nat', CHAINS.inRedirect, { protocol: tcp }, { kind: 'REDIRECT', toPort: s.inboundCapturePort });

  if (captureInbound) {
    b.append(inboundTable, 'PREROUTING', { protocol: tcp }, jump(CHAINS.inbound));
    // The HBONE tunnel port is never captured.
    b.append(inboundTable, CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', s.inboundTunnelPort)] }, RETURN);
    if (s.includeInboundPorts.all) {
      for (const p of s.excludeInboundPorts) b.append(inboundTable, CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', p)] }, RETURN);
      if (tproxy) {
        // Packets of established connections go straight to the local socket; new ones to TPROXY.
        b.append('mangle', CHAINS.inbound, { protocol: tcp, matches: [{ kind: 'conntrack', ctstate: { value: ['RELATED', 'ESTABLISHED'] } }] }, jump(CHAINS.divert));
        b.append('mangle', CHAINS.inbound, { protocol: tcp }, jump(CHAINS.tproxy));
      } else {
        b.append('nat', CHAINS.inbound, { protocol: tcp }, jump(CHAINS.inRedirect));
      }
    } else {
      for (const p of s.includeInboundPorts.ports) {
        if (tproxy) {
          b.append('mangle', CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', p), { kind: 'conntrack', ctstate: { value: ['RELATED', 'ESTABLISHED'] } }] }, jump(CHAINS.divert));
          b.append('mangle', CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', p)] }, jump(CHAINS.tproxy));
        } else {
          b.append('nat', CHAINS.inbound, { protocol: tcp, matches: [dport('tcp', p)] }, jump(CHAINS.inRedirect));
        }
      }
    }
  }

  // Outbound: with DNS capture UDP must enter ISTIO_OUTPUT too.
  b.append('nat', 'OUTPUT', s.dnsCapture ? {} : { protocol: tcp }, jump(CHAINS.output));
  for (const p of s.excludeOutboundPorts) {
    b.append('nat', CHAINS.output, { protocol: tcp, matches: [dport('tcp', p)] }, RETURN);
    if (s.dnsCapture) b.append('nat', CHAINS.output, { protocol: udp, matches: [dport('udp', p)] }, RETURN);
  }
  // 127.0.0.6 / ::6 is where Envoy's inbound passthrough cluster connects from.
  b.append('nat', CHAINS.output, { source: { value: passthrough }, outInterface: { value: 'lo' } }, RETURN);

  const includes = s.includeOutboundCidrs.all ? [] : s.includeOutboundCidrs.cidrs;
  const keepLoopbackReturn = !includesLoopback(family, includes);
  for (const [owner, id] of [
    [uidOwner, s.proxyUid],
    [gidOwner, s.proxyGid],
  ] as const) {
    // App → VIP → Envoy (client) → Envoy (server) → app: the proxy's own calls over lo are inbound.
    b.append(
      'nat',
      CHAINS.output,
      s.dnsCapture
        ? { destination: { value: localhost, invert: true }, outInterface: { value: 'lo' }, protocol: tcp, matches: [{ kind: 'multiport', direction: 'dports', ports: [53, s.inboundTunnelPort], invert: true }, owner(id)] }
        : { destination: { value: localhost, invert: true }, outInterface: { value: 'lo' }, matches: [owner(id)] },
      jump(CHAINS.inRedirect),
    );
    // App → app over lo is not captured, unless a loopback range is explicitly included.
    if (keepLoopbackReturn) {
      b.append(
        'nat',
        CHAINS.output,
        s.dnsCapture ? { outInterface: { value: 'lo' }, protocol: tcp, matches: [dport('tcp', 53, true), owner(id, true)] } : { outInterface: { value: 'lo' }, matches: [owner(id, true)] },
        RETURN,
      );
    }
    // Envoy's own outbound traffic is never redirected back to Envoy.
    b.append('nat', CHAINS.output, { matches: [owner(id)] }, RETURN);
  }

  if (s.dnsCapture) {
    b.append('nat', CHAINS.output, {}, jump(CHAINS.outputDns));
    // The agent's and Envoy's own upstream DNS queries go out untouched.
    b.append('nat', CHAINS.outputDns, { protocol: udp, matches: [dport('udp', 53), uidOwner(s.proxyUid)] }, RETURN);
    b.append('nat', CHAINS.outputDns, { protocol: udp, matches: [dport('udp', 53), gidOwner(s.proxyGid)] }, RETURN);
    b.append('nat', CHAINS.outputDns, { protocol: tcp, matches: [dport('tcp', 53)] }, { kind: 'REDIRECT', toPort: s.dnsPort });
    b.append('nat', CHAINS.outputDns, { protocol: udp, matches: [dport('udp', 53)] }, { kind: 'REDIRECT', toPort: s.dnsPort });
    // Conntrack zones keep the two legs of a redirected UDP DNS exchange apart.
    for (const owner of [uidOwner(s.proxyUid), gidOwner(s.proxyGid)]) {
      b.append('raw', 'OUTPUT', { protocol: udp, matches: [dport('udp', 53), owner] }, { kind: 'CT', zone: 1 });
      b.append('raw', 'OUTPUT', { protocol: udp, matches: [sport('udp', s.dnsPort), owner] }, { kind: 'CT', zone: 2 });
    }
    b.append('raw', 'OUTPUT', { protocol: udp, matches: [dport('udp', 53)] }, { kind: 'CT', zone: 2 });
    b.append('raw', 'PREROUTING', { protocol: udp, matches: [sport('udp', 53)] }, { kind: 'CT', zone: 1 });
  }

  // Envoy-aware apps and container-to-container traffic use localhost.
  b.append('nat', CHAINS.output, { destination: { value: localhost } }, RETURN);
  for (const c of inFamily(family, s.excludeOutboundCidrs)) b.append('nat', CHAINS.output, { destination: { value: c } }, RETURN);
  for (const p of s.includeOutboundPorts) b.append('nat', CHAINS.output, { protocol: tcp, matches: [dport('tcp', p)] }, jump(CHAINS.redirect));
  if (s.includeOutboundCidrs.all) b.append('nat', CHAINS.output, {}, jump(CHAINS.redirect));
  else for (const c of inFamily(family, includes)) b.append('nat', CHAINS.output, { destination: { value: c } }, jump(CHAINS.redirect));

  // Virtual interfaces (KubeVirt) at the very top of PREROUTING, each inserted at position 1.
  for (const ifc of s.rerouteInterfaces) b.insert('nat', 'PREROUTING', 1, { inInterface: { value: ifc } }, RETURN);

  if (tproxy && captureInbound) {
    // Save the mark Envoy's original_src filter sets, so replies route back through the proxy.
    b.append('mangle', 'PREROUTING', { protocol: tcp, matches: [{ kind: 'mark', mark: { value: s.tproxyMark } }] }, { kind: 'CONNMARK', mode: 'save', nfmask: 0xffffffff, ctmask: 0xffffffff });
    // Envoy → app packets already marked: leave them alone.
    b.append('mangle', 'OUTPUT', { protocol: tcp, outInterface: { value: 'lo' }, matches: [{ kind: 'mark', mark: { value: s.tproxyMark } }] }, RETURN);
    for (const owner of [uidOwner(s.proxyUid), gidOwner(s.proxyGid)]) {
      // App → VIP → Envoy outbound → (mark 1338) → Envoy inbound → app.
      b.append('mangle', 'OUTPUT', { destination: { value: localhost, invert: true }, protocol: tcp, outInterface: { value: 'lo' }, matches: [owner] }, { kind: 'MARK', value: s.outboundMark, mask: 0xffffffff });
    }
    // Workload replies take the policy route back to the proxy.
    b.append('mangle', 'OUTPUT', { protocol: tcp, matches: [{ kind: 'connmark', mark: { value: s.tproxyMark } }] }, { kind: 'CONNMARK', mode: 'restore', nfmask: 0xffffffff, ctmask: 0xffffffff });
    // Guards at the top of ISTIO_INBOUND: no re-marking, no capture of passthrough or app → app.
    b.insert('mangle', CHAINS.inbound, 1, { protocol: tcp, matches: [{ kind: 'mark', mark: { value: s.tproxyMark } }] }, RETURN);
    b.insert('mangle', CHAINS.inbound, 2, { protocol: tcp, source: { value: passthrough }, inInterface: { value: 'lo' } }, RETURN);
    b.insert('mangle', CHAINS.inbound, 3, { protocol: tcp, inInterface: { value: 'lo' }, matches: [{ kind: 'mark', mark: { value: s.tproxyMark, invert: true } }] }, RETURN);
  }

  return b.ruleset(['raw', 'mangle', 'nat']);
}

/** IPv4 rules always; IPv6 rules when the pod is dual stack. */
export function buildIptables(s: RedirectSettings): { v4: XtRuleset; v6: XtRuleset | null } {
  return { v4: buildFamily(s, 'ip'), v6: s.dualStack ? buildFamily(s, 'ip6') : null };
}
