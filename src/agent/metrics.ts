// Prometheus metrics of the agent, on a registry of its own (no global default registry): request
// counters and latencies, process defaults, what build runs, and whether the CNI chain is in place.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface AgentMetrics {
  registry: Registry;
  requests: Counter<'command' | 'result'>;
  addSeconds: Histogram<'result'>;
  applySeconds: Histogram<'layout'>;
  inFlight: Gauge;
  repairs: Counter<'result'>;
  buildInfo: Gauge<'version' | 'node' | 'nodejs' | 'arch'>;
  /** 1 while our chain entry and shim are in place (set by the installer), 0 otherwise. */
  installReady: Gauge;
}

/** The package version, read from the package.json two levels above this module (src/ or dist/). */
export const BUILD_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

// Sub-millisecond for the common case, up to the shim's 5 s deadline: a slow API server or a
// stuck netns shows up in its own bucket instead of only in +Inf.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** `processDefaults: false` leaves out Node's process metrics (and their event-loop monitor): for throwaway registries. */
export function createMetrics(
  nodeName: string = process.env.NODE_NAME || hostname(),
  opts: { processDefaults?: boolean } = {},
): AgentMetrics {
  const registry = new Registry();
  if (opts.processDefaults !== false) collectDefaultMetrics({ register: registry });
  const buildInfo = new Gauge({
    name: 'meshcni_build_info',
    help: 'Always 1; the labels say which meshcni build runs on which node and Node.js.',
    labelNames: ['version', 'node', 'nodejs', 'arch'],
    registers: [registry],
  });
  buildInfo.set({ version: BUILD_VERSION, node: nodeName, nodejs: process.versions.node, arch: process.arch }, 1);
  return {
    registry,
    requests: new Counter({
      name: 'meshcni_cni_requests_total',
      help: 'CNI requests handled, by command and result (ok, skipped, error).',
      labelNames: ['command', 'result'],
      registers: [registry],
    }),
    addSeconds: new Histogram({
      name: 'meshcni_cni_add_duration_seconds',
      help: 'Time to handle a CNI ADD inside the agent, from request to response.',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    applySeconds: new Histogram({
      name: 'meshcni_apply_duration_seconds',
      help: 'Time to program one pod namespace (one nftables transaction).',
      labelNames: ['layout'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'meshcni_cni_requests_in_flight',
      help: 'CNI requests being handled now.',
      registers: [registry],
    }),
    repairs: new Counter({
      name: 'meshcni_repairs_total',
      help: 'Pods whose rules reconcile found missing or different, by outcome.',
      labelNames: ['result'],
      registers: [registry],
    }),
    buildInfo,
    installReady: new Gauge({
      name: 'meshcni_install_ready',
      help: "1 while meshcni's entry is in the node's primary CNI config and the shim is in the CNI bin dir.",
      registers: [registry],
    }),
  };
}
