// The agent's CNI endpoint: HTTP/1.1 `POST /v1/cni` on a root-only unix socket. A lean parser on
// net.Server (one request per connection, as the shim sends it): strict JSON, bounded heads and
// bodies, root peers only, a deadline for each request to arrive, a cap on open connections,
// answers even to clients that half-closed, and a graceful close that lets in-flight requests finish.
import { chmodSync, lstatSync, mkdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { peerCredentials } from '../../kernel/index.js';
import { CNI_ERR, CniError, errorBody, parseCniRequest, podArgsOrEmpty, type CniRequest } from '../cni.js';

export type CniHandler = (req: CniRequest) => Promise<Record<string, unknown> | null>;

export interface SocketServerOptions {
  socketPath: string;
  handler: CniHandler;
  log: Logger;
  maxBodyBytes?: number;
  /** Refuse peers whose uid is not 0 (default true; tests that run unprivileged clients turn it off). */
  rootPeersOnly?: boolean;
  /** How long a client has, from connecting, to send its whole request (default 5 s). */
  requestTimeoutMs?: number;
  /** Open connections beyond this are answered 503 and closed at once (default 1024). */
  maxConnections?: number;
  /** Bench instrumentation: each answered request's timeline, CLOCK_MONOTONIC ms (as process.hrtime). */
  onTiming?: (t: RequestTiming) => void;
}

export interface RequestTiming {
  acceptedAt: number;
  /** The whole request is in. */
  receivedAt: number;
  /** The answer was handed to the socket. */
  answeredAt: number;
}

const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

const MAX_HEAD_BYTES = 16 * 1024;
const REASONS: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  411: 'Length Required',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

/** One complete HTTP/1.1 answer; every answer closes its connection. */
function httpAnswer(status: number, body: string): string {
  return `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * Sends the last bytes and closes once the kernel has them: a half-open client that never closes
 * its side must not keep the connection (and its fd) forever. It still reads what was sent.
 */
function endAndClose(sock: Socket, last: string): void {
  sock.on('error', () => undefined);
  sock.end(last, () => sock.destroy());
}

const isEnoent = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT';

/**
 * Makes the socket's directory root-owned 0700 when it is missing. An existing directory is only
 * checked, never changed: it must belong to the agent's user and must not be writable by group or
 * others, sticky or not. In a sticky world-writable directory (/tmp, /run/user) anyone may bind a
 * free name there, so a socket path that is free for a moment is anyone's.
 */
function prepareSocketDir(socketPath: string): void {
  const dir = dirname(socketPath);
  const uid = process.getuid?.();
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    if (!isEnoent(e)) throw e;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700); // ours: the umask must not decide its mode
    st = statSync(dir);
  }
  if (!st.isDirectory()) throw new Error(`socket directory ${dir} is not a directory`);
  if (st.uid !== uid)
    throw new Error(`socket directory ${dir} is owned by uid ${st.uid}, not by the agent (uid ${uid})`);
  if ((st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o7777).toString(8);
    throw new Error(
      `socket directory ${dir} has mode ${mode}: writable by group or others (sticky or not), ` +
        'so another user could bind the socket path first; make it 0700 or 0755',
    );
  }
  try {
    const s = lstatSync(socketPath);
    if (!s.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
    if (s.uid !== uid) throw new Error(`${socketPath} exists and is owned by uid ${s.uid}; refusing to replace it`);
  } catch (e) {
    if (!isEnoent(e)) throw e;
  }
}

/** Linux sun_path less its NUL. */
const SUN_PATH_MAX = 107;

/**
 * Where to bind before the socket is renamed into place: next to it, so the rename is atomic and the
 * path always names either the stale socket or ours, never nothing that someone else could bind.
 * Null when that name would not fit in sun_path (then the old socket is unlinked right before listen;
 * the directory check above leaves nobody else able to bind in that moment).
 */
function bindPathFor(socketPath: string): string | null {
  const p = `${dirname(socketPath)}/.${process.pid}.bind`;
  return Buffer.byteLength(p) <= SUN_PATH_MAX ? p : null;
}

/** What is known about a connection's request so far, for logs. */
interface Conn {
  sock: Socket;
  chunks: Buffer[];
  received: number;
  /** Byte offset where the body starts, once the head is parsed. */
  bodyAt: number;
  contentLength: number;
  /** The request is complete and with the handler (or answered): no more input is read. */
  taken: boolean;
  answered: boolean;
  timer: NodeJS.Timeout;
  acceptedAt: number;
  receivedAt: number;
  pod?: { namespace?: string; pod?: string; containerId: string; command: string };
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A parse problem answered with an HTTP status and CNI error JSON. */
const reject = (status: number, msg: string, code: number = CNI_ERR.decode): CniError =>
  new CniError(code, msg, '', status);

export class CniSocketServer {
  private readonly server: Server;
  private readonly conns = new Set<Conn>();
  private inFlight = 0;
  private closing = false;
  private readonly maxBody: number;
  private readonly requestTimeoutMs: number;
  private readonly maxConnections: number;
  private refusedSinceLog = 0;
  private lastCapLog = 0;

  constructor(private readonly opts: SocketServerOptions) {
    this.maxBody = opts.maxBodyBytes ?? 1 << 20;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
    this.maxConnections = opts.maxConnections ?? 1024;
    // allowHalfOpen: a client that shut down its sending side after the request still gets the answer.
    this.server = createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  get openConnections(): number {
    return this.conns.size;
  }

  async listen(): Promise<void> {
    const path = this.opts.socketPath;
    prepareSocketDir(path);
    const bindPath = bindPathFor(path);
    const unlinkIfThere = (p: string): void => {
      try {
        unlinkSync(p);
      } catch (e) {
        if (!isEnoent(e)) throw e;
      }
    };
    unlinkIfThere(bindPath ?? path); // a stale bind name of a crashed agent with our pid, or the old socket
    const old = process.umask(0o177); // the socket is born 0600: no window with wider access
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(bindPath ?? path, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    chmodSync(bindPath ?? path, 0o600);
    if (bindPath) renameSync(bindPath, path); // atomically replaces a stale socket: no moment without one
    this.boundIno = lstatSync(path).ino;
  }

  /** The inode of the socket file we put in place, so close removes ours and nobody else's. */
  private boundIno: number | undefined;

  /** Stops accepting, waits for in-flight requests, then closes the connections left. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) if (!c.taken) this.drop(c);
    while (this.inFlight > 0) await new Promise((r) => setTimeout(r, 5));
    for (const c of this.conns) this.drop(c);
    await closed;
    try {
      const path = this.opts.socketPath;
      if (this.boundIno !== undefined && lstatSync(path).ino === this.boundIno) unlinkSync(path);
    } catch (e) {
      if (!isEnoent(e)) throw e;
    }
  }

  private drop(c: Conn): void {
    clearTimeout(c.timer);
    this.conns.delete(c);
    c.sock.destroy();
  }

  private onConnection(sock: Socket): void {
    if (this.conns.size >= this.maxConnections) return this.refuseOverCap(sock);
    if (this.opts.rootPeersOnly !== false && !this.peerIsRoot(sock)) return;
    const c: Conn = {
      sock,
      chunks: [],
      received: 0,
      bodyAt: -1,
      contentLength: -1,
      taken: false,
      answered: false,
      timer: setTimeout(() => this.onTimeout(c), this.requestTimeoutMs),
      acceptedAt: 0,
      receivedAt: 0,
    };
    if (this.opts.onTiming) c.acceptedAt = monotonicMs();
    this.conns.add(c);
    sock.on('data', (d: Buffer) => this.onData(c, d));
    sock.on('end', () => {
      // The client will send nothing more. A complete request is answered all the same.
      if (!c.taken) {
        this.opts.log.debug({ received: c.received }, 'a client closed its connection before sending a whole request');
        this.drop(c);
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      // A runtime that gave up (timeout, killed shim) is not an agent error. While the handler
      // runs, answer() reports it with the outcome.
      if (!c.taken)
        this.opts.log.debug(
          { code: e.code, received: c.received },
          'a CNI client went away before sending a whole request',
        );
      else if (c.answered)
        this.opts.log.info({ ...c.pod, code: e.code }, 'a CNI client went away before reading its answer');
    });
    sock.on('close', () => {
      clearTimeout(c.timer);
      this.conns.delete(c);
    });
  }

  /** Over the cap: answer at once (the shim reports it as a retryable error) and log, at most once a second. */
  private refuseOverCap(sock: Socket): void {
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastCapLog >= 1000) {
      this.opts.log.warn(
        { openConnections: this.conns.size, maxConnections: this.maxConnections, refused: this.refusedSinceLog },
        'too many open CNI connections; refusing new ones until some close',
      );
      this.refusedSinceLog = 0;
      this.lastCapLog = now;
    }
    endAndClose(
      sock,
      httpAnswer(
        503,
        JSON.stringify(
          errorBody(
            '1.1.0',
            reject(503, `meshcni agent has ${this.maxConnections} open connections; try again`, CNI_ERR.tryAgainLater),
          ),
        ),
      ),
    );
  }

  private peerIsRoot(sock: Socket): boolean {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    try {
      if (fd === undefined || fd < 0) throw new Error('no file descriptor for the connection');
      const cred = peerCredentials(fd);
      if (cred.uid === 0) return true;
      this.opts.log.warn({ peerUid: cred.uid, peerPid: cred.pid }, 'refused a connection from a non-root peer');
      endAndClose(sock, 'HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    } catch (e) {
      this.opts.log.error({ err: e }, 'could not read the peer credentials of a connection; refusing it');
      sock.destroy();
    }
    return false;
  }

  private onTimeout(c: Conn): void {
    if (c.taken) return;
    this.opts.log.info(
      { received: c.received, timeoutMs: this.requestTimeoutMs },
      'closed a CNI connection that did not send its request in time',
    );
    this.answerError(c, reject(408, `request not received within ${this.requestTimeoutMs} ms`), '1.1.0');
  }

  private onData(c: Conn, d: Buffer): void {
    if (c.taken) return; // one request per connection; anything after it is ignored
    c.chunks.push(d);
    c.received += d.length;
    try {
      if (c.bodyAt < 0) {
        const all = c.chunks.length === 1 ? c.chunks[0]! : Buffer.concat(c.chunks);
        c.chunks = [all];
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) {
          if (all.length > MAX_HEAD_BYTES) throw reject(431, `request head exceeds ${MAX_HEAD_BYTES} bytes`);
          return;
        }
        this.parseHead(c, all.toString('latin1', 0, end));
        c.bodyAt = end + 4;
      }
      if (c.received - c.bodyAt < c.contentLength) return;
      c.taken = true;
      clearTimeout(c.timer);
      if (this.opts.onTiming) c.receivedAt = monotonicMs();
      const all = c.chunks.length === 1 ? c.chunks[0]! : Buffer.concat(c.chunks);
      c.chunks = [];
      void this.run(c, all.subarray(c.bodyAt, c.bodyAt + c.contentLength));
    } catch (e) {
      this.answerError(c, e as CniError, '1.1.0');
    }
  }

  /** Request line and the headers we need; anything we cannot serve exactly is refused, not guessed. */
  private parseHead(c: Conn, head: string): void {
    const lines = head.split('\r\n');
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? '');
    if (!m) throw reject(400, `malformed request line '${(lines[0] ?? '').slice(0, 80)}'`);
    let length: string | undefined;
    let ctype = '';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) throw reject(400, `malformed header line '${line.slice(0, 80)}'`);
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (length !== undefined && length !== value)
          throw reject(400, `conflicting Content-Length headers '${length}' and '${value}'`);
        length = value;
      } else if (name === 'content-type') ctype = value;
      else if (name === 'transfer-encoding')
        throw reject(501, `Transfer-Encoding '${value}' is not supported; send Content-Length`);
      else if (name === 'expect' && value.toLowerCase() === '100-continue')
        c.sock.write('HTTP/1.1 100 Continue\r\n\r\n');
    }
    if (this.closing) throw reject(503, 'meshcni agent is shutting down', CNI_ERR.tryAgainLater);
    if (m[1] !== 'POST' || m[2] !== '/v1/cni') throw reject(404, `no route ${m[1]} ${m[2]}`, CNI_ERR.internal);
    if (!ctype.startsWith('application/json'))
      throw reject(415, `content type must be application/json, got '${ctype}'`);
    if (length === undefined) throw reject(411, 'request has no Content-Length');
    if (!/^\d{1,10}$/.test(length)) throw reject(400, `Content-Length '${length.slice(0, 20)}' is not a byte count`);
    c.contentLength = Number(length);
    if (c.contentLength > this.maxBody)
      throw reject(413, `request body of ${c.contentLength} bytes exceeds the limit of ${this.maxBody}`);
  }

  private async run(c: Conn, bytes: Buffer): Promise<void> {
    this.inFlight++;
    let cniVersion = '1.1.0';
    try {
      let parsed: unknown;
      let body: string;
      try {
        // Strict: a lossy decode would turn bytes the shim saw into U+FFFD the agent sees, and the two
        // would read different values (a CNI_NETNS, say). The shim sends only valid UTF-8.
        body = STRICT_UTF8.decode(bytes);
      } catch {
        throw reject(400, 'request body is not valid UTF-8');
      }
      try {
        parsed = JSON.parse(body);
      } catch (e) {
        throw reject(400, `request body is not valid JSON: ${(e as Error).message}`);
      }
      const request = parseCniRequest(parsed);
      cniVersion = request.config.cniVersion;
      c.pod = { containerId: request.containerId, command: request.command, ...podOf(request.args) };
      const result = await this.opts.handler(request);
      this.answer(c, 200, result === null ? '' : JSON.stringify(result));
    } catch (e) {
      if (!(e instanceof CniError))
        this.opts.log.error({ err: e, ...c.pod }, 'unexpected error handling a CNI request');
      this.answerError(c, e, cniVersion);
    } finally {
      this.inFlight--;
    }
  }

  private answerError(c: Conn, e: unknown, cniVersion: string): void {
    const err = e instanceof CniError ? e : new CniError(CNI_ERR.internal, (e as Error).message);
    c.taken = true;
    this.answer(c, err.httpStatus, JSON.stringify(errorBody(cniVersion, err)));
  }

  private answer(c: Conn, status: number, body: string): void {
    clearTimeout(c.timer);
    if (c.sock.destroyed || !c.sock.writable) {
      if (c.pod) this.opts.log.info({ ...c.pod, status }, 'a CNI client went away before its answer');
      this.drop(c);
      return;
    }
    c.answered = true;
    endAndClose(c.sock, httpAnswer(status, body));
    this.opts.onTiming?.({ acceptedAt: c.acceptedAt, receivedAt: c.receivedAt, answeredAt: monotonicMs() });
  }
}

/** The pod fields of CNI_ARGS for logs; malformed args are the handler's to report. */
function podOf(args: string): { namespace?: string; pod?: string } {
  const { namespace, name } = podArgsOrEmpty(args);
  return { namespace, pod: name };
}
