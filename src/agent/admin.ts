// The agent's HTTP endpoints: on loopback /healthz, /readyz and /metrics for the kubelet and
// operators; optionally a second listener with /metrics alone, the one Prometheus may reach.
import { createServer, type Server } from 'node:http';
import type { AgentMetrics } from './metrics.js';

export interface AdminOptions {
  /** host:port (validated by the config: loopback for the full server, any IP for metrics only). */
  address: string;
  /** Serve /metrics and nothing else: for an address other pods or hosts can reach. */
  metricsOnly?: boolean;
  metrics: AgentMetrics;
  isReady: () => boolean;
  /** Why the agent is not ready, for the /readyz body. */
  notReadyReason: () => string;
}

export class AdminServer {
  private readonly server: Server;

  constructor(private readonly opts: AdminOptions) {
    this.server = createServer((req, res) => {
      const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (req.method !== 'GET') return send(405, 'method not allowed\n');
      if (this.opts.metricsOnly && req.url !== '/metrics')
        return send(404, 'not found (this address serves /metrics only)\n');
      switch (req.url) {
        case '/healthz':
          return send(200, 'ok\n');
        case '/readyz':
          return this.opts.isReady() ? send(200, 'ready\n') : send(503, `not ready: ${this.opts.notReadyReason()}\n`);
        case '/metrics':
          this.opts.metrics.registry
            .metrics()
            .then((text) => send(200, text, this.opts.metrics.registry.contentType))
            .catch((e: unknown) => send(500, `${(e as Error).message}\n`));
          return;
        default:
          return send(404, 'not found\n');
      }
    });
  }

  /** Listens; resolves with the bound port (useful when the address asks for port 0). */
  async listen(): Promise<number> {
    const colon = this.opts.address.lastIndexOf(':');
    const host = this.opts.address.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(this.opts.address.slice(colon + 1));
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address();
    return typeof addr === 'object' && addr ? addr.port : port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
