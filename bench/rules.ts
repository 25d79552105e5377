// The rules the benchmarks program: the documented pod (dual stack for the IPv4+IPv6 paths), as
// meshcni's tables, iptables-restore text per family, and nft text — all from one plan.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCaptureConfig } from '../src/capture/config.js';
import { planRules } from '../src/capture/plan.js';
import type { TableContents } from '../src/nft/model.js';
import { renderRestore } from '../src/nft/xtables/render.js';

const DOCUMENTED = {
  'traffic.sidecar.istio.io/excludeInboundPorts': '22',
  'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
};

export function podObject(
  namespace: string,
  name: string,
  annotations: Record<string, string>,
  dualStack = false,
): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, annotations: { ...DOCUMENTED, ...annotations } },
    spec: {
      containers: [
        { name: 'app', image: 'example/app' },
        {
          name: 'istio-proxy',
          image: 'istio/proxyv2',
          securityContext: { runAsUser: 1337, runAsGroup: 1337 },
          ...(dualStack ? { env: [{ name: 'ISTIO_DUAL_STACK', value: 'true' }] } : {}),
        },
      ],
    },
    status: { phase: 'Running' },
  };
}

export function writePod(dir: string, namespace: string, name: string, annotations: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${namespace}-${name}.json`), JSON.stringify(podObject(namespace, name, annotations)));
}

/** meshcni's tables (IPv4, as the agent programs the bench pod) and the oracle texts. */
export function rulesForBench(): { tables: TableContents[]; v4: string; v6: string; nft: string } {
  const ipt = planRules(podObject('bench', 'web', {}, true), parseCaptureConfig({}));
  const nft = planRules(podObject('bench', 'web', {}, false), parseCaptureConfig({ layout: 'nft' }));
  const v4only = planRules(podObject('bench', 'web', {}), parseCaptureConfig({}));
  if (!ipt.capture || !nft.capture || !v4only.capture) throw new Error('bench pod is not captured');
  return {
    tables: v4only.tables,
    v4: renderRestore(ipt.iptables.v4),
    v6: renderRestore(ipt.iptables.v6!),
    nft: nft.text,
  };
}

/** A pod whose port and CIDR lists have `size` entries each, in the given layout. */
export function scalePod(size: number, layout: 'iptables' | 'nft'): TableContents[] {
  return scalePlan(size, layout).tables;
}

/** The same pod's tables and the text an operator reads (nft syntax for the nft layout). */
export function scalePlan(size: number, layout: 'iptables' | 'nft'): { tables: TableContents[]; text: string } {
  const ports = Array.from({ length: size }, (_, i) => 20000 + i).join(',');
  const cidrs = Array.from({ length: size }, (_, i) => `10.${Math.floor(i / 256) % 256}.${i % 256}.0/24`).join(',');
  const ann: Record<string, string> =
    size === 0
      ? {}
      : {
          'traffic.sidecar.istio.io/excludeOutboundPorts': ports,
          'traffic.sidecar.istio.io/excludeOutboundIPRanges': cidrs,
          'traffic.sidecar.istio.io/excludeInboundPorts': ports,
        };
  const plan = planRules(podObject('bench', 'scale', ann), parseCaptureConfig({ layout }));
  if (!plan.capture) throw new Error('scale pod is not captured');
  return { tables: plan.tables, text: plan.text };
}
