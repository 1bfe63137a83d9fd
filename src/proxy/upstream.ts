import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import { classifyUpstreamError, LbError } from '../util/errors.js';
import { fieldIs, isChunked } from './headers.js';
import { HTTPParser, kOnBody, kOnHeaders, kOnHeadersComplete, kOnMessageBegin, kOnMessageComplete, type LlhttpParser } from './llhttp.js';
import { CRLF, chunkParts, closeLater, lastChunk } from './wire.js';
import { SocketIO } from './socket-io.js';
import { now as clockNow } from '../util/clock.js';

/**
 * The proxy's HTTP/1.1 client to one backend: keep-alive sockets parsed by Node's own llhttp
 * binding (the parser behind node:http), one request per connection at a time, no pipelining.
 *
 * Why not undici's Pool here: the request path is the product's hottest loop, and a minimal proxy
 * on undici's dispatcher costs ~75 µs of CPU per request on this machine against ~44 µs for the
 * same proxy on this client (bench/RESULTS.md). undici stays for health probes, broadcasts and
 * the CLI, where its generality is worth more than its cost.
 *
 * Shape follows undici (STYLE): the pool decides which connection, the connection owns one
 * socket and one parser, the exchange is one request with exactly one completion path; every
 * failure is an LbError with a stable code, and removal is close (finish in-flight, then end).
 */

/** What the proxy sends. `headers` is a flat [name, value, …] list, hop-by-hop fields removed. */
export interface UpstreamRequest {
  method: string;
  path: string;
  headers: readonly string[];
  /** The client's body, streamed with backpressure; null for a body-less request. */
  body: Readable | null;
  /** Frame the body with chunked encoding (the client's was chunked); else its Content-Length is in headers. */
  chunked: boolean;
  /** From request written to response head, and the longest silence while the body streams. */
  headersTimeout: number;
  bodyTimeout: number;
}

/** Callbacks for one exchange. Exactly one of onEnd / onError is called, once. */
export interface UpstreamHandler {
  /** A 1xx response other than 101 (103 Early Hints, 102 Processing, 100 Continue). */
  onInformational(status: number, headers: string[]): void;
  onHead(status: number, headers: string[]): void;
  /**
   * Return false to pause the backend until `resume()`. `chunk` may be a view of the connection's
   * read buffer: valid until this returns, unless written through a SocketIO; copy it to keep it.
   */
  onData(chunk: Buffer): boolean;
  onEnd(trailers: string[]): void;
  onError(err: LbError): void;
}

export interface Exchange {
  /** Read from the backend again after onData returned false. */
  resume(): void;
  /** Cancel: the socket is destroyed (it cannot be reused mid-exchange) and onError reports `reason`. */
  abort(reason: Error): void;
}

export interface UpstreamOptions {
  /** Most sockets open to this backend; further requests wait in order. */
  connections: number;
  connectTimeout: number;
  /** Idle keep-alive time when the backend gives no `Keep-Alive: timeout=` hint. */
  keepAliveTimeout: number;
  /** Close this long before the backend's hinted idle timeout, so lb never writes to a socket it is closing. */
  keepAliveThreshold: number;
  tls?: { rejectUnauthorized: boolean; ca?: Buffer };
}

/** #readFraming's answer for a Transfer-Encoding other than just `chunked` (gzip, …). */
const OTHER_CODING = -2;

/** Steps an inactivity limit is checked in (see Connection#setTimeout). */
const TIMEOUT_STEPS = 8;

export const UPSTREAM_DEFAULTS = { connections: 256, keepAliveTimeout: 4_000, keepAliveThreshold: 2_000 } as const;


class Connection {
  readonly socket: net.Socket;
  readonly io: SocketIO;
  readonly #parser: LlhttpParser;
  readonly #pool: UpstreamPool;
  ex: ActiveExchange | null = null;
  /** Host header for requests that came without one (HTTP/1.0 clients). */
  readonly hostHeader: string;
  connected = false;
  dead = false;
  /** Keep-alive idle time for this socket (from the backend's hint, if any). */
  idleMs: number;
  /** The Keep-Alive field value idleMs was last read from. */
  #keepAliveHint: string | undefined;
  /** When it last went idle (ms since epoch), for the pool's idle sweep. */
  idleSince = 0;
  #timeoutMs = -1;
  /** Timer steps in a row with no read or write, and the socket's activity count when last looked at. */
  #quiet = 0;
  #ticksSeen = 0;
  #keepAlive = true;
  #completed = false;
  #headers: string[] = [];
  #informational = false;
  /**
   * Bytes of a Content-Length body still to come. Such a body bypasses the parser: llhttp is
   * stopped after the head (kOnHeadersComplete returns 2) and the body goes to the client as
   * slices of the socket's reads, not as the parser binding's copy of each piece.
   */
  #bodyLeft = 0;

  constructor(pool: UpstreamPool, url: URL, opts: UpstreamOptions) {
    this.#pool = pool;
    this.idleMs = opts.keepAliveTimeout;
    this.hostHeader = url.host;
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const onConnect = (): void => {
      this.connected = true;
      // Connecting was activity: the response's limit counts from here, even when it equals the connect limit.
      this.#heard();
      if (this.ex) this.#setTimeout(this.ex.req.headersTimeout);
      this.ex?.connected();
    };
    if (url.protocol === 'https:') {
      this.socket = tls.connect({
        host,
        port,
        servername: net.isIP(host) ? undefined : host,
        ALPNProtocols: ['http/1.1'],
        rejectUnauthorized: opts.tls?.rejectUnauthorized ?? true,
        ...(opts.tls?.ca ? { ca: opts.tls.ca } : {}),
      });
      this.socket.once('secureConnect', onConnect);
    } else {
      this.socket = net.connect({ host, port, noDelay: true });
      this.socket.once('connect', onConnect);
    }
    const p = (this.#parser = new HTTPParser());
    p.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    p[kOnHeaders] = (headers: string[]) => {
      for (const h of headers) this.#headers.push(h);
    };
    p[kOnHeadersComplete] = this.#onHeadersComplete;
    p[kOnBody] = (chunk: Buffer) => {
      if (this.ex && !this.#informational) this.ex.data(chunk);
    };
    p[kOnMessageComplete] = this.#onMessageComplete;
    // Reads go to the connection's own buffer: every consumer of a body chunk either writes it
    // through a SocketIO (which counts the writes that keep it) or is done with it on return.
    this.io = new SocketIO(this.socket, this.#onData, { readBuffer: 'own' });
    this.io.refreshTimer = false; // #onTimeout counts silence itself
    this.#setTimeout(opts.connectTimeout);
    this.socket.on('end', this.#onEnd);
    this.socket.on('timeout', this.#onTimeout);
    this.socket.on('error', this.#onError);
    this.socket.on('close', this.#onClose);
  }

  #onHeadersComplete = (
    _major: number, _minor: number, headers: string[] | undefined, _method: unknown, _url: unknown,
    status: number, _message: string, _upgrade: boolean, keepAlive: boolean,
  ): number => {
    if (headers === undefined) {
      headers = this.#headers;
      this.#headers = [];
    }
    const ex = this.ex;
    if (!ex || ex.headReceived || status === 101) {
      // A response nobody asked for, or a switch of protocols lb never requested.
      this.#fail(new LbError('LB_BACKEND_PROTOCOL', 'backend sent an unexpected response'));
      return 1;
    }
    if (status < 200) {
      this.#informational = true;
      ex.handler.onInformational(status, headers);
      return 1;
    }
    this.#informational = false;
    this.#keepAlive = keepAlive;
    const length = this.#readFraming(headers, keepAlive);
    // No body to read for HEAD, 204 and 304, whatever the framing headers say.
    const bodyless = ex.req.method === 'HEAD' || status === 204 || status === 304;
    if (length === OTHER_CODING && !bodyless) {
      // lb re-frames every body it relays; a coding it would have to pass on is refused, as nginx does.
      this.#fail(new LbError('LB_BACKEND_PROTOCOL', 'backend used a transfer coding other than chunked'));
      return 1;
    }
    this.#setTimeout(ex.req.bodyTimeout);
    ex.head(status, headers);
    if (bodyless) return 1;
    if (length > 0) {
      this.#bodyLeft = length;
      // llhttp reports the message complete right after a head it is told to stop at. With no
      // function there, node's binding skips that call into JavaScript (#onData puts it back).
      this.#parser[kOnMessageComplete] = undefined;
      return 2; // stop after the head: #onData passes the body through
    }
    return 0;
  };

  #onMessageComplete = (): void => {
    if (this.#informational) {
      this.#informational = false;
      return;
    }
    if (this.#bodyLeft > 0) return; // the head only: the body is still to come (#takeBody)
    const ex = this.ex;
    if (!ex) return;
    const trailers = this.#headers;
    this.#headers = [];
    this.ex = null;
    this.#completed = ex.responseComplete(trailers) && this.#keepAlive;
    if (!this.#completed) return this.destroy();
    // A message beginning after this one in the same read was never asked for (lb does not
    // pipeline): the callback is there only until #onData has finished with this read.
    this.#parser[kOnMessageBegin] = this.#onStray;
  };

  /** Bytes after a complete response began another message: the socket cannot be reused. */
  #stray = false;
  #onStray = (): void => {
    this.#stray = true;
  };

  #onData = (chunk: Buffer): void => {
    if (!this.ex) {
      // Bytes on an idle keep-alive socket: the backend is confused; never attribute them to a later request.
      this.destroy();
      return;
    }
    const p = this.#parser;
    if (p[kOnMessageBegin] !== undefined) p[kOnMessageBegin] = undefined;
    let rest: Buffer | null = chunk;
    if (this.#bodyLeft > 0) rest = this.#takeBody(chunk);
    else {
      const r = p.execute(chunk);
      if (p[kOnMessageComplete] === undefined) p[kOnMessageComplete] = this.#onMessageComplete;
      if (r instanceof Error) {
        this.#fail(new LbError('LB_BACKEND_PROTOCOL', `backend sent an invalid response: ${(r as { code?: string }).code ?? r.message}`, { cause: r }));
        return;
      }
      rest = this.#bodyLeft > 0 && r < chunk.length ? this.#takeBody(chunk.subarray(r)) : null;
    }
    // lb never pipelines: bytes after a complete response mean the socket cannot be trusted again,
    // whether they came after a Content-Length body (rest) or began a message in the parser.
    if (this.#completed && (this.#stray || (rest !== null && rest.length > 0))) {
      this.#completed = false;
      this.#stray = false;
      this.destroy();
      return;
    }
    if (this.#completed) {
      // Hand the socket back only after the parser has unwound, so the next exchange starts clean.
      this.#completed = false;
      this.#pool.release(this);
    }
  };

  /** Pass up to #bodyLeft bytes of `buf` to the exchange; completes the response at its end. Returns what follows the body. */
  #takeBody(buf: Buffer): Buffer | null {
    const n = Math.min(this.#bodyLeft, buf.length);
    this.#bodyLeft -= n;
    const ex = this.ex;
    if (ex) ex.data(n === buf.length ? buf : buf.subarray(0, n));
    if (this.#bodyLeft === 0 && this.ex) this.#onMessageComplete();
    return n === buf.length ? null : buf.subarray(n);
  }

  #onEnd = (): void => {
    // A body delimited by the end of the connection completes here; anything else is cut short.
    if (this.ex) {
      const r = this.#parser.finish();
      if (r instanceof Error || this.ex) this.#fail(new LbError('LB_BACKEND_RESET', 'backend closed the connection mid-response'));
    }
    this.destroy();
  };

  /** The socket's timer, every 1/TIMEOUT_STEPS of the limit: silence is counted in steps with no read or write. */
  #onTimeout = (): void => {
    if (this.io.ticks !== this.#ticksSeen) {
      this.#heard();
      return this.io.restartTimer();
    }
    if (++this.#quiet < TIMEOUT_STEPS) return this.io.restartTimer();
    this.#heard(); // the limit ran out: whatever follows counts afresh
    if (!this.ex) return this.destroy(); // idle far longer than the sweep allows: close it
    // A request body still going out to a slow reader is not silence (node:net's own rule).
    if (this.io.writeProgressed()) return this.io.restartTimer();
    if (!this.connected) return this.#fail(new LbError('LB_BACKEND_CONNECT', 'backend connect failed: timeout'));
    // A silence lb or the client made is the client's: it is not held against the backend
    // (passive health), and the client gets 408 (or, mid-response, its connection closed).
    if (this.ex.waitingOnClient(this.io)) return this.#fail(new LbError('LB_CLIENT_TIMEOUT', 'client stopped sending its request body or reading the response'));
    this.#fail(new LbError('LB_BACKEND_TIMEOUT', 'backend timed out'));
  };

  #onError = (err: Error): void => {
    if (!this.ex) return this.destroy();
    const e = classifyUpstreamError(err);
    // A connection that never opened is a connect failure, whatever the socket called it.
    this.#fail(this.connected || e.code === 'LB_BACKEND_CONNECT' ? e : new LbError('LB_BACKEND_CONNECT', e.message, { cause: err }));
  };

  #onClose = (): void => {
    if (this.ex) this.#fail(new LbError(this.connected ? 'LB_BACKEND_RESET' : 'LB_BACKEND_CONNECT', 'backend closed the connection'));
    this.destroy();
  };

  /**
   * The Content-Length (-1 when none, OTHER_CODING for a transfer coding other than chunked) and,
   * on a keep-alive response, the backend's idle-time hint.
   */
  #readFraming(headers: string[], keepAlive: boolean): number {
    let length = -1;
    let chunked = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (fieldIs(name, 'content-length')) length = Number(headers[i + 1]);
      else if (fieldIs(name, 'transfer-encoding')) {
        if (!isChunked(headers[i + 1])) return OTHER_CODING;
        chunked = true; // llhttp decodes it
      }
      else if (keepAlive && fieldIs(name, 'keep-alive') && headers[i + 1] !== this.#keepAliveHint) {
        // A backend repeats the same hint on every response: it is read once per connection.
        this.#keepAliveHint = headers[i + 1];
        const m = /timeout=(\d+)/i.exec(this.#keepAliveHint);
        if (m) this.idleMs = Math.min(600_000, Number(m[1]) * 1000 - this.#pool.opts.keepAliveThreshold);
      }
    }
    return chunked ? -1 : length;
  }


  /** Start an exchange on this socket (fresh or idle). */
  start(ex: ActiveExchange): void {
    this.ex = ex;
    this.#keepAlive = true;
    this.io.resume(); // the last response may have ended under backpressure
    if (this.connected) this.#setTimeout(ex.req.headersTimeout);
    ex.send(this);
  }

  /**
   * The socket's inactivity limit. Re-armed only when the value changes: the proxy's headers
   * and body timeouts are usually the same, so a busy socket keeps one timer for its whole life.
   * (An idle socket is closed by the pool's sweep; this timer only backs it up.)
   *
   * The timer is not restarted on every read and write, as node:net's would be (a timer-list
   * update and a call into C++ for libuv's clock, twice per request): it fires every
   * 1/TIMEOUT_STEPS of the limit, and #onTimeout looks at the socket's activity count. A silence
   * is noticed between the limit and an eighth past it.
   */
  #setTimeout(ms: number): void {
    if (ms === this.#timeoutMs) return;
    this.#timeoutMs = ms;
    this.#heard();
    this.socket.setTimeout(ms > 0 ? Math.max(1, Math.ceil(ms / TIMEOUT_STEPS)) : 0); // 0: no limit, as before
  }

  /** Silence counts from now. */
  #heard(): void {
    this.#quiet = 0;
    this.#ticksSeen = this.io.ticks;
  }

  #fail(err: LbError): void {
    const ex = this.ex;
    this.ex = null;
    this.destroy();
    ex?.fail(err);
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    closeLater(this.#parser);
    this.#pool.gone(this);
  }
}

class ActiveExchange implements Exchange {
  readonly req: UpstreamRequest;
  readonly handler: UpstreamHandler;
  conn: Connection | null = null;
  headReceived = false;
  #bodySent: boolean;
  #done = false;
  /** Detaches the request-body listeners while the body is streaming; null otherwise. */
  #stopBody: (() => void) | null = null;

  constructor(req: UpstreamRequest, handler: UpstreamHandler) {
    this.req = req;
    this.handler = handler;
    this.#bodySent = req.body === null;
  }

  send(conn: Connection): void {
    this.conn = conn;
    const { req } = this;
    const h = req.headers;
    let head = `${req.method} ${req.path} HTTP/1.1${CRLF}`;
    let hasHost = false;
    for (let i = 0; i < h.length; i += 2) {
      if (!hasHost && fieldIs(h[i], 'host')) hasHost = true;
      head += `${h[i]}: ${h[i + 1]}${CRLF}`;
    }
    if (!hasHost) head += `host: ${conn.hostHeader}${CRLF}`;
    if (req.chunked) head += `transfer-encoding: chunked${CRLF}`;
    conn.io.write(head + CRLF);
    // The body is read only once the socket is open: a request whose connect failed has had
    // nothing of it consumed, so it can still be retried elsewhere (retries.nonIdempotent).
    if (conn.connected) this.connected();
  }

  connected(): void {
    if (this.req.body && !this.#done && !this.#bodySent && !this.#stopBody) this.#streamBody(this.conn!.io, this.req.body);
  }

  #streamBody(io: SocketIO, body: Readable): void {
    const chunked = this.req.chunked;
    const socket = io.socket;
    const onData = (chunk: Buffer): void => {
      let ok: boolean;
      if (chunked) {
        if (chunk.length === 0) return;
        ok = io.writev(chunkParts(chunk));
      } else ok = io.write(chunk);
      if (!ok) body.pause();
    };
    const onEnd = (): void => {
      cleanup();
      if (chunked) io.write(lastChunk());
      this.#bodySent = true;
    };
    const onAbort = (): void => {
      cleanup();
      this.abort(new LbError('LB_CLIENT_CLOSED', 'client aborted the request body'));
    };
    const onDrain = (): void => {
      body.resume();
    };
    const cleanup = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onAbort);
      body.off('aborted', onAbort);
      socket.off('drain', onDrain);
      this.#stopBody = null;
    };
    this.#stopBody = cleanup;
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onAbort);
    body.on('aborted', onAbort);
    socket.on('drain', onDrain);
    body.resume();
  }

  head(status: number, headers: string[]): void {
    this.headReceived = true;
    this.handler.onHead(status, headers);
  }

  /**
   * Is this exchange waiting on its client, so that silence on the backend socket is the
   * client's doing? Either the response is paused until the client reads (`data` pauses `io`
   * only for that), or the request body is still streaming and everything the client sent of it
   * has gone to the backend: the backend cannot answer a request it does not have yet.
   */
  waitingOnClient(io: SocketIO): boolean {
    if (this.#done) return false;
    if (this.headReceived && io.paused) return true;
    return !this.#bodySent && this.#stopBody !== null && io.pending === 0;
  }

  data(chunk: Buffer): void {
    if (!this.#done && !this.handler.onData(chunk)) this.conn!.io.pause();
  }

  /** The response is complete. Returns whether the socket may be reused (the whole request went out). */
  responseComplete(trailers: string[]): boolean {
    const reusable = this.#bodySent;
    // A response that ends before the request body does: stop sending; the socket is not reused.
    this.#stopBody?.();
    if (this.#done) return false;
    this.#done = true;
    this.handler.onEnd(trailers);
    return reusable;
  }

  fail(err: LbError): void {
    this.#stopBody?.();
    if (this.#done) return;
    this.#done = true;
    this.handler.onError(err);
  }

  isDone(): boolean {
    return this.#done;
  }

  resume(): void {
    if (!this.#done && this.conn?.ex === this) this.conn.io.resume();
  }

  abort(reason: Error): void {
    if (this.#done) return;
    const conn = this.conn;
    if (conn && conn.ex === this) {
      conn.ex = null;
      conn.destroy();
    }
    this.fail(classifyUpstreamError(reason));
  }
}

export class UpstreamPool {
  readonly opts: UpstreamOptions;
  readonly #url: URL;
  readonly #free: Connection[] = [];
  readonly #all = new Set<Connection>();
  readonly #queue: ActiveExchange[] = [];
  #closing: (() => void) | null = null;
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(url: URL, opts: UpstreamOptions) {
    this.#url = url;
    this.opts = opts;
  }

  /** Close sockets idle past their keep-alive time (checked every 250 ms while any is idle). */
  #sweep = (): void => {
    const now = clockNow();
    for (const conn of [...this.#free]) if (now - conn.idleSince >= conn.idleMs) conn.destroy();
    if (this.#free.length === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  };

  /** Sockets open (busy and idle), for tests and stats. */
  get size(): number {
    return this.#all.size;
  }

  request(req: UpstreamRequest, handler: UpstreamHandler): Exchange {
    const ex = new ActiveExchange(req, handler);
    if (this.#closed) {
      ex.fail(new LbError('LB_BACKEND_CONNECT', 'backend removed'));
      return ex;
    }
    let conn = this.#free.pop();
    while (conn?.dead) conn = this.#free.pop();
    if (conn) conn.start(ex);
    else if (this.#all.size < this.opts.connections) this.#open().start(ex);
    else this.#queue.push(ex);
    return ex;
  }

  /** The oldest queued exchange not cancelled while it waited. */
  #nextQueued(): ActiveExchange | undefined {
    let next = this.#queue.shift();
    while (next?.isDone()) next = this.#queue.shift();
    return next;
  }

  #open(): Connection {
    const conn = new Connection(this, this.#url, this.opts);
    this.#all.add(conn);
    return conn;
  }

  /** A connection finished its exchange and may be reused. */
  release(conn: Connection): void {
    if (conn.dead) return;
    const next = this.#nextQueued();
    if (next) return conn.start(next);
    if (this.#closed || conn.idleMs <= 0) return conn.destroy();
    // An idle socket must keep reading, or it would never notice the backend closing it.
    conn.io.resume();
    conn.idleSince = clockNow();
    this.#free.push(conn);
    this.#sweeper ??= setInterval(this.#sweep, 250).unref();
  }

  /** A connection died (closed, errored, or destroyed by lb). */
  gone(conn: Connection): void {
    if (!this.#all.delete(conn)) return;
    const i = this.#free.lastIndexOf(conn);
    if (i >= 0) this.#free.splice(i, 1);
    const next = this.#closed ? undefined : this.#nextQueued();
    if (next) this.#open().start(next);
    if (this.#all.size === 0) this.#closing?.();
  }

  /** Stop taking requests; in-flight exchanges finish, then every socket closes. */
  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const ex of this.#queue.splice(0)) ex.fail(new LbError('LB_BACKEND_CONNECT', 'backend removed'));
    for (const conn of this.#free.splice(0)) conn.destroy();
    if (this.#all.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#closing = resolve;
    });
  }

  destroy(): void {
    void this.close();
    for (const conn of [...this.#all]) conn.destroy();
  }
}
