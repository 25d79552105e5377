// Prometheus metrics of the agent, on a registry of its own (no global default registry).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface AgentMetrics {
  registry: Registry;
  requests: Counter<'command' | 'result'>;
  addSeconds: Histogram<'result'>;
  applySeconds: Histogram<'layout'>;
  inFlight: Gauge;
  repairs: Counter<'result'>;
}

const FAST_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export function createMetrics(): AgentMetrics {
  const registry = new Registry();
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
      buckets: FAST_BUCKETS,
      registers: [registry],
    }),
    applySeconds: new Histogram({
      name: 'meshcni_apply_duration_seconds',
      help: 'Time to program one pod namespace (one nftables transaction).',
      labelNames: ['layout'],
      buckets: FAST_BUCKETS,
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
  };
}
