// Pod → plan: the capture decision, the redirect settings and the exact tables to program, for the
// configured layout, with the text an operator would read (iptables-save or nft syntax). Pure.
import type { TableContents } from '../nft/model.js';
import { renderNft } from '../nft/render-nft.js';
import type { RoutingPlan } from '../rtnetlink/route.js';
import { encodeXtRuleset } from '../nft/xtables/encode.js';
import type { XtRuleset } from '../nft/xtables/model.js';
import { renderRestore } from '../nft/xtables/render.js';
import type { CaptureConfig, Layout } from './config.js';
import { decideCapture } from './decision.js';
import { buildIptables } from './iptables.js';
import { buildIstioNftTables } from './istio-nftables.js';
import { buildNftTables } from './nftables.js';
import { INJECT_KEY, PROXY_CONTAINER, globalAddressFamilies, podFromObject, podIpsOf } from './pod.js';
import { redirectSettings, type RedirectSettings } from './settings.js';

export type RulesPlan =
  | {
      capture: true;
      layout: Layout;
      settings: RedirectSettings;
      /** Everything to program, IPv4 and IPv6, in one transaction. */
      tables: TableContents[];
      /** iptables layout: the rulesets as iptables-restore would take them. */
      iptables: { v4: XtRuleset; v6: XtRuleset | null };
      /** What an operator reads: iptables-save text (IPv4 then IPv6) or nft text. */
      text: string;
      /** Routing the pod needs besides nftables (TPROXY, ::6 on lo); absent when none. */
      routing?: RoutingPlan;
    }
  | { capture: false; reason: string };

export function planRules(obj: unknown, config: CaptureConfig): RulesPlan {
  const pod = podFromObject(obj);
  const d = decideCapture(pod, config);
  if (!d.capture) return d;
  const settings = redirectSettings(pod, config);
  const iptables = buildIptables(settings);
  let tables: TableContents[];
  let text: string;
  if (config.layout === 'nft') {
    // Istio 1.30.3 has a native nftables backend: its shape, exactly. 1.17.8 has none; its nft
    // layout is derived from the iptables rules (with named sets when nftSets is on).
    tables =
      settings.istioRules === '1.30'
        ? buildIstioNftTables(settings)
        : buildNftTables(iptables.v4, iptables.v6, { sets: config.nftSets });
    text = renderNft(tables);
  } else {
    tables = [...encodeXtRuleset(iptables.v4), ...(iptables.v6 ? encodeXtRuleset(iptables.v6) : [])];
    text = `# IPv4 (iptables-save)\n${renderRestore(iptables.v4)}${iptables.v6 ? `# IPv6 (ip6tables-save)\n${renderRestore(iptables.v6)}` : ''}`;
  }
  const plan: RulesPlan = { capture: true, layout: config.layout, settings, tables, iptables, text };
  const routing: RoutingPlan = {};
  const captureInbound = settings.includeInboundPorts.all || settings.includeInboundPorts.ports.length > 0;
  if (settings.mode === 'TPROXY' && captureInbound) {
    routing.tproxy = {
      mark: settings.tproxyMark,
      table: settings.tproxyTable,
      families: settings.dualStack ? [4, 6] : [4],
    };
  }
  // Envoy's inbound passthrough binds ::6 for IPv6; the address must exist on lo.
  if (settings.dualStack) routing.loopbackAddresses = ['::6/128'];
  if (routing.tproxy || routing.loopbackAddresses) plan.routing = routing;
  return plan;
}

/**
 * Everything of a pod that its plan depends on, as a string: pods with equal keys get identical
 * plans, so the agent can compute one plan per distinct key instead of one per pod.
 */
export function planKey(obj: unknown): string | null {
  if (typeof obj !== 'object' || obj === null) return null;
  type Meta = { namespace?: unknown; annotations?: Record<string, unknown>; labels?: Record<string, unknown> };
  const o = obj as {
    metadata?: Meta;
    spec?: { containers?: unknown; initContainers?: unknown; hostNetwork?: unknown };
    status?: unknown;
  };
  const ann = o.metadata?.annotations ?? {};
  const relevant = Object.keys(ann)
    .filter(
      (k) =>
        k.startsWith('traffic.sidecar.istio.io/') ||
        k.startsWith('sidecar.istio.io/') ||
        k === 'istio.io/reroute-virtual-interfaces',
    )
    .sort()
    .map((k) => [k, ann[k]]);
  const lists = [o.spec?.initContainers ?? [], o.spec?.containers];
  if (!lists.every(Array.isArray)) return null;
  // Names of every container; of the proxy, everything the decision and the rules read.
  const shape = (lists as Record<string, unknown>[][]).map((list) =>
    list.map((c) =>
      c && c.name === PROXY_CONTAINER
        ? { n: c.name, sc: c.securityContext ?? null, env: c.env ?? null, args: c.args ?? null, image: c.image ?? null }
        : { n: typeof c?.name === 'string' ? c.name : null },
    ),
  );
  const label = o.metadata?.labels?.[INJECT_KEY] ?? null;
  // Of the pod's IPs only their families matter (whether IPv6 rules are written).
  let families: (4 | 6)[] = [];
  try {
    families = globalAddressFamilies(podIpsOf(obj as Record<string, unknown>) ?? []);
  } catch {
    return null; // planning reports what is wrong with the pod
  }
  return JSON.stringify([
    o.metadata?.namespace ?? 'default',
    relevant,
    shape,
    label,
    o.spec?.hostNetwork ?? null,
    families,
  ]);
}
