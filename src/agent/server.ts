// The agent's CNI endpoint: HTTP/1.1 on a root-only unix socket, strict JSON, bounded bodies,
// root peers only, graceful close that lets in-flight requests finish.
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { peerCredentials } from '../kernel/index.js';
import { CNI_ERR, CniError, errorBody, parseCniRequest, type CniRequest } from './cni.js';

export type CniHandler = (req: CniRequest) => Promise<Record<string, unknown> | null>;

export interface SocketServerOptions {
  socketPath: string;
  handler: CniHandler;
  log: Logger;
  maxBodyBytes?: number;
  /** Refuse peers whose uid is not 0 (default true; tests that run unprivileged clients turn it off). */
  rootPeersOnly?: boolean;
}

/** Makes the socket's directory: root-owned, mode 0700; refuses one owned by someone else. */
function prepareSocketDir(socketPath: string): void {
  const dir = dirname(socketPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (st.uid !== process.getuid?.()) throw new Error(`socket directory ${dir} is owned by uid ${st.uid}, not by the agent`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  try {
    const s = lstatSync(socketPath);
    if (!s.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
    unlinkSync(socketPath); // a stale socket from a previous run
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export class CniSocketServer {
  private readonly server: Server;
  private inFlight = 0;
  private closing = false;
  private readonly maxBody: number;

  constructor(private readonly opts: SocketServerOptions) {
    this.maxBody = opts.maxBodyBytes ?? 1 << 20;
    this.server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => void this.onRequest(req, res));
    this.server.on('connection', (sock: Socket) => this.onConnection(sock));
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  async listen(): Promise<void> {
    prepareSocketDir(this.opts.socketPath);
    const old = process.umask(0o177); // the socket is born 0600: no window with wider access
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(this.opts.socketPath, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    chmodSync(this.opts.socketPath, 0o600);
  }

  /** Stops accepting, waits for in-flight requests, then closes idle connections. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    while (this.inFlight > 0) await new Promise((r) => setTimeout(r, 5));
    this.server.closeAllConnections();
    await closed;
  }

  private onConnection(sock: Socket): void {
    if (this.opts.rootPeersOnly === false) return;
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    try {
      if (fd === undefined || fd < 0) throw new Error('no file descriptor for the connection');
      const cred = peerCredentials(fd);
      if (cred.uid !== 0) {
        this.opts.log.warn({ peerUid: cred.uid, peerPid: cred.pid }, 'refused a connection from a non-root peer');
        sock.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        sock.destroySoon();
      }
    } catch (e) {
      this.opts.log.error({ err: e }, 'could not read the peer credentials of a connection; refusing it');
      sock.destroy();
    }
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlight++;
    let cniVersion = '1.1.0';
    try {
      if (this.closing) throw new CniError(CNI_ERR.tryAgainLater, 'meshcni agent is shutting down', '', 503);
      if (req.method !== 'POST' || req.url !== '/v1/cni') throw new CniError(CNI_ERR.internal, `no route ${req.method} ${req.url}`, '', 404);
      const ctype = req.headers['content-type'] ?? '';
      if (!ctype.startsWith('application/json')) throw new CniError(CNI_ERR.decode, `content type must be application/json, got '${ctype}'`, '', 415);
      const body = await this.readBody(req);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch (e) {
        throw new CniError(CNI_ERR.decode, `request body is not valid JSON: ${(e as Error).message}`, '', 400);
      }
      const request = parseCniRequest(parsed);
      cniVersion = request.config.cniVersion;
      const result = await this.opts.handler(request);
      const text = result === null ? '' : JSON.stringify(result);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    } catch (e) {
      const err = e instanceof CniError ? e : new CniError(CNI_ERR.internal, (e as Error).message);
      if (!(e instanceof CniError)) this.opts.log.error({ err: e }, 'unexpected error handling a CNI request');
      const text = JSON.stringify(errorBody(cniVersion, err));
      if (!res.headersSent) {
        res.writeHead(err.httpStatus, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close' });
      }
      res.end(text);
    } finally {
      this.inFlight--;
    }
  }

  private readBody(req: IncomingMessage): Promise<string> {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > this.maxBody) {
      req.resume();
      return Promise.reject(new CniError(CNI_ERR.decode, `request body of ${declared} bytes exceeds the limit of ${this.maxBody}`, '', 413));
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > this.maxBody) {
          reject(new CniError(CNI_ERR.decode, `request body exceeds the limit of ${this.maxBody} bytes`, '', 413));
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  }
}
