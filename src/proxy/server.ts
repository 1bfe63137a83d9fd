import net from 'node:net';
import tls from 'node:tls';
import { STATUS_CODES, validateHeaderName, validateHeaderValue, type IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import {
  HTTPParser, kOnBody, kOnHeaders, kOnHeadersComplete, kOnMessageBegin, kOnMessageComplete, methods,
  type LlhttpParser, type ParseError,
} from './llhttp.js';
import { asksForWebSocket, fieldIs, isChunked } from './headers.js';
import { CRLF, chunkParts, closeLater, lastChunk } from './wire.js';
import { SocketIO } from './socket-io.js';
import { now as clockNow } from '../util/clock.js';

/**
 * lb's HTTP/1.1 server side: client connections parsed by Node's llhttp binding directly, the
 * same parser and strict rules as node:http (never lenient), without an IncomingMessage and a
 * ServerResponse (two streams and their event machinery) per request. The proxy needs less of
 * them: a request head, a body stream only when there is a body, and a response writer that frames
 * what the backend sent. Measured by A/B (bench/RESULTS.md): lb with mode none went from ~63 to
 * ~52 µs of CPU per proxied request when this replaced node:http's server.
 *
 * What it keeps from node:http, because clients and tests rely on it: keep-alive with an idle
 * timeout; the request-headers deadline (408, slowloris); header size limit (431 via
 * onClientError); pipelined requests answered in order; Expect: 100-continue; HTTP/1.0 clients
 * (close-delimited bodies, keep-alive only when asked); a client's FIN abandons what it asked
 * for (499); chunked framing when the length is unknown; trailers; 103 Early Hints; a Date header;
 * graceful close (idle connections first). Upgrades are handed over with the bytes after the head.
 */

export interface ServerOptions {
  /** ms from a request's first byte (or the connection's start) to its complete head → 408. */
  headersTimeout: number;
  /** ms an idle keep-alive connection is kept open. */
  keepAliveTimeout: number;
  /** TLS: serve HTTPS with these options (a shared certificate). */
  tls?: tls.TlsOptions;
}

export interface ServerHandlers {
  onRequest(req: ProxyRequest, res: ProxyResponse): void;
  /** An Upgrade request; the socket and the bytes after its head are the handler's from here. */
  onUpgrade?(req: ProxyRequest, socket: net.Socket, head: Buffer): void;
  /** A request that cannot be parsed, or a head that came too slowly: answer and end the socket. */
  onClientError(err: ParseError, socket: net.Socket): void;
}

/** A Transfer-Encoding value whose last coding is chunked. */
const CHUNKED_LAST = /(?:^|,)[ \t]*chunked[ \t]*$/i;

/** Headers whose duplicates node:http drops (first wins) instead of joining. */
const SINGLE = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);

/** The headers object node:http would build (joinDuplicateHeaders off): lowercase names. */
function headersObject(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    const prev = out[name];
    if (prev === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (name === 'set-cookie') (prev as string[]).push(value);
    else if (name === 'cookie') out[name] = `${prev}; ${value}`;
    else if (!SINGLE.has(name)) out[name] = `${prev}, ${value}`;
  }
  return out as IncomingHttpHeaders;
}

/** A request's body, fed by the parser; reading it resumes the client socket (backpressure). */
class BodyStream extends Readable {
  readonly #io: SocketIO;

  constructor(io: SocketIO) {
    super({ highWaterMark: 64 * 1024 });
    this.#io = io;
  }

  override _read(): void {
    this.#io.resume(); // a no-op unless the body's backpressure paused it
  }
}

/** One request head (and its body stream, when it has a body). */
export class ProxyRequest {
  method: string;
  /** The request target; sanitizeRequest may rewrite it to origin form. */
  url: string;
  /** [name, value, …] as received; sanitizeRequest may edit it. */
  rawHeaders: string[];
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  readonly socket: net.Socket;
  /** The client's body; null when the request has none (no Content-Length > 0, no Transfer-Encoding). */
  readonly body: BodyStream | null;
  /** The body is chunked (Transfer-Encoding; llhttp accepts only chunked as its last coding). */
  readonly chunked: boolean;
  /** The whole request (head and body) has been received. */
  complete: boolean;
  /** The client allows the connection to stay open after this exchange (llhttp's verdict). */
  readonly keepAlive: boolean;
  /** Transfer-Encoding names a coding besides chunked (`gzip, chunked`): answered 501. */
  otherCoding = false;
  #headers: IncomingHttpHeaders | undefined;

  constructor(method: string, url: string, raw: string[], major: number, minor: number, keepAlive: boolean, io: SocketIO) {
    this.method = method;
    this.url = url;
    this.rawHeaders = raw;
    this.httpVersionMajor = major;
    this.httpVersionMinor = minor;
    this.keepAlive = keepAlive;
    this.socket = io.socket;
    let chunked = false;
    let length = false;
    for (let i = 0; i < raw.length; i += 2) {
      if (fieldIs(raw[i], 'transfer-encoding')) {
        chunked = true;
        // A coding before a final chunked (`gzip, chunked`): 501. Without chunked last, llhttp
        // refuses the body itself (400, RFC 9112 §6.3).
        if (!isChunked(raw[i + 1]) && CHUNKED_LAST.test(raw[i + 1])) this.otherCoding = true;
      } else if (fieldIs(raw[i], 'content-length') && raw[i + 1] !== '0') length = true;
    }
    const framed = chunked || length;
    this.chunked = chunked;
    this.body = framed ? new BodyStream(io) : null;
    this.complete = !framed;
  }

  /** Lowercase names, duplicates joined as node:http joins them; built on first use. */
  get headers(): IncomingHttpHeaders {
    return (this.#headers ??= headersObject(this.rawHeaders));
  }

  /** Has any of the body been read (then the request cannot be replayed elsewhere)? */
  get readableDidRead(): boolean {
    return this.body?.readableDidRead ?? false;
  }
}

/** node:http's own checks: a name that is not a token, or a value with CR, LF or NUL, throws a TypeError. */
function checkField(name: string, value: string): void {
  validateHeaderName(name);
  validateHeaderValue(name, value);
}

let dateSecond = -1;
let dateLine = '';
/** The Date header line (IMF-fixdate), formatted once a second. */
function dateField(): string {
  const now = clockNow();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateLine = `date: ${new Date(now).toUTCString()}${CRLF}`;
  }
  return dateLine;
}

/** Status lines by code, made on first use (a response's first line is one of a few). */
const statusLines: string[] = [];
function statusLine(status: number): string {
  return (statusLines[status] ??= `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}${CRLF}`);
}

export type HeaderInput = readonly string[] | Record<string, string | number | readonly string[] | undefined>;

function flatten(h: HeaderInput): string[] {
  if (Array.isArray(h)) return h as string[];
  const out: string[] = [];
  for (const [name, v] of Object.entries(h)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(name, String(x));
    else out.push(name, String(v));
  }
  return out;
}

type Listener = () => void;

const uncork = (s: net.Socket): void => s.uncork();

/**
 * The answer to one request, written straight to the client socket. The subset of
 * ServerResponse's surface lb uses: writeHead, write (false = wait for 'drain'), end,
 * addTrailers, writeInformational, flushHead, destroy, and the 'close' event (finished or aborted).
 */
export class ProxyResponse {
  statusCode = 200;
  headersSent = false;
  writableFinished = false;
  destroyed = false;
  readonly socket: net.Socket;
  readonly #io: SocketIO;
  readonly #conn: ClientConnection;
  readonly #req: ProxyRequest;
  #head: string | null = null;
  #chunked = false;
  #bodyless = false;
  /** The connection closes after this response. */
  closeAfter = false;
  #trailers: string[] | null = null;
  #onClose: Listener[] | null = null;

  constructor(conn: ClientConnection, req: ProxyRequest) {
    this.#conn = conn;
    this.#req = req;
    this.socket = conn.socket;
    this.#io = conn.io;
  }

  /** 'close' (finished or aborted) fires once, so on and once are the same for it. */
  on(event: 'close', fn: Listener): this {
    (this.#onClose ??= []).push(fn);
    return this;
  }

  once(event: 'close' | 'drain', fn: Listener): this {
    if (event === 'drain') this.socket.once('drain', fn);
    else (this.#onClose ??= []).push(fn);
    return this;
  }

  off(event: 'close', fn: Listener): this {
    if (this.#onClose) {
      const i = this.#onClose.indexOf(fn);
      if (i !== -1) this.#onClose.splice(i, 1);
    }
    return this;
  }

  /**
   * Throws (TypeError) on a header name or value that must not be sent; nothing is written then.
   * `checked`: the fields are known to be valid (a backend's, as llhttp's strict parser took
   * them, which refuses every byte node:http would; test/upstream.test.ts), so none is checked again.
   */
  writeHead(status: number, headers: HeaderInput = [], checked = false): this {
    if (this.headersSent) throw new Error('response head already sent');
    const h = flatten(headers);
    const req = this.#req;
    let head = statusLine(status);
    let length = false;
    let chunked = false;
    let date = false;
    let close = false;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i];
      const value = h[i + 1];
      if (!checked) checkField(name, value);
      // lb decides the connection's fate below; a `close` asked for here is honoured.
      if (fieldIs(name, 'connection')) {
        if (value.toLowerCase().includes('close')) close = true;
        continue;
      }
      if (fieldIs(name, 'keep-alive')) continue;
      if (fieldIs(name, 'date')) date = true;
      else if (fieldIs(name, 'content-length')) length = true;
      else if (fieldIs(name, 'transfer-encoding')) chunked = true;
      head += `${name}: ${value}${CRLF}`;
    }
    this.#bodyless = req.method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
    const http11 = req.httpVersionMajor === 1 && req.httpVersionMinor >= 1;
    if (!this.#bodyless && !length && !chunked) {
      // Unknown length: chunked to HTTP/1.1 clients, delimited by closing for HTTP/1.0 ones.
      if (http11) {
        head += `transfer-encoding: chunked${CRLF}`;
        chunked = true;
      } else close = true;
    }
    this.#chunked = chunked && !this.#bodyless;
    // A request whose body was not all read cannot be followed by another on this connection.
    if (close || !req.keepAlive || !req.complete || this.#conn.closing) {
      this.closeAfter = true;
      head += `connection: close${CRLF}`;
    } else {
      if (!http11) head += `connection: keep-alive${CRLF}`;
      head += this.#conn.keepAliveField;
    }
    if (!date) head += dateField();
    this.statusCode = status;
    this.#head = head + CRLF;
    this.headersSent = true;
    return this;
  }

  /**
   * An interim (1xx) response ahead of the final one: 103 Early Hints, 102 Processing, … (HTTP/1.1
   * clients only; 100 Continue is lb's own to send, 101 is an upgrade's).
   */
  writeInformational(status: number, hints: HeaderInput): void {
    if (this.headersSent || this.destroyed || this.#req.httpVersionMinor < 1 || !(status >= 102 && status < 200)) return;
    const h = flatten(hints);
    let head = statusLine(status);
    for (let i = 0; i < h.length; i += 2) {
      checkField(h[i], h[i + 1]);
      head += `${h[i]}: ${h[i + 1]}${CRLF}`;
    }
    this.#io.write(head + CRLF);
  }

  /**
   * Send the head now rather than with the first body bytes: a backend that answers and then
   * waits (server-sent events, long polls) has its head reach the client at once. Bytes written
   * in the same turn still leave in one write (SocketIO holds small writes to the turn's end).
   */
  flushHead(): void {
    if (this.#head === null || this.destroyed) return;
    const head = this.#head;
    this.#head = null;
    // Stream path (TLS): hold the head until this callback has unwound, so body bytes from the
    // same read join it in one write (one TLS record), as they did before the head was flushed.
    if (!this.#io.direct && this.socket.writableCorked === 0) {
      this.socket.cork();
      process.nextTick(uncork, this.socket);
    }
    this.#io.write(head);
  }

  /** Sent after a chunked body (dropped otherwise, as node:http does). */
  addTrailers(trailers: HeaderInput): void {
    const t = flatten(trailers);
    for (let i = 0; i < t.length; i += 2) checkField(t[i], t[i + 1]);
    this.#trailers = t;
  }

  write(chunk: Buffer): boolean {
    if (this.destroyed || this.writableFinished) return false;
    const parts = this.#frame(chunk);
    return parts.length ? this.#io.writev(parts) : !this.#io.needDrain;
  }

  end(chunk?: Buffer | string): void {
    if (this.destroyed || this.writableFinished) return;
    const parts = this.#frame(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (this.#chunked) parts.push(lastChunk(this.#trailers));
    if (parts.length) this.#io.writev(parts);
    this.writableFinished = true;
    this.#conn.finished(this);
    this.#emitClose();
  }

  /**
   * Abort: the client connection is destroyed (a truncated body is never presented as complete).
   * With an error, by a reset: a client reading a close-delimited body (HTTP/1.0) would take a
   * plain close for its end.
   */
  destroy(err?: Error): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (err !== undefined && !this.socket.destroyed) this.socket.resetAndDestroy();
    else this.socket.destroy();
    this.#emitClose();
  }

  /** The client went away before this response finished. */
  aborted(): void {
    if (this.destroyed || this.writableFinished) return;
    this.destroyed = true;
    this.#emitClose();
  }

  /** What goes out for `chunk`: the head, if not sent yet, then the chunk as the framing wants it. */
  #frame(chunk: Buffer | undefined): (Buffer | string)[] {
    if (!this.headersSent) this.writeHead(this.statusCode);
    const parts: (Buffer | string)[] = [];
    if (this.#head !== null) {
      parts.push(this.#head);
      this.#head = null;
    }
    if (chunk === undefined || chunk.length === 0 || this.#bodyless) return parts;
    if (this.#chunked) parts.push(...chunkParts(chunk));
    else parts.push(chunk);
    return parts;
  }

  #emitClose(): void {
    const fns = this.#onClose;
    if (!fns) return;
    this.#onClose = null;
    for (const fn of fns) fn();
  }
}

/** llhttp's method number for CONNECT (always an `upgrade`: the rest of the stream is a tunnel). */
const CONNECT = methods.indexOf('CONNECT');

const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;

/** Pipelined requests parsed ahead of their turn; past this, the client socket stops being read. */
const MAX_QUEUED = 16;

class ClientConnection {
  readonly socket: net.Socket;
  readonly io: SocketIO;
  readonly #server: HttpServer;
  readonly #parser: LlhttpParser;
  #headerParts: string[] = [];
  #urlPart = '';
  /** The request whose bytes the parser is reading. */
  #parsing: ProxyRequest | null = null;
  /** Heads parsed while an earlier request was still being answered, in order. */
  readonly #queue: ProxyRequest[] = [];
  #active: ProxyResponse | null = null;
  #upgrade: ProxyRequest | null = null;
  /** When the head being received began (ms), 0 when no head is pending. */
  headersStartedAt: number;
  /** When the connection last became idle (ms), 0 while busy. */
  idleSince = 0;
  /** Bytes still queued for the client at the last check (the idle clock restarts while they drain). */
  pendingSeen = 0;
  /** No more requests are read (a parse error, or the connection is being closed). */
  #done = false;
  /** A request head has begun and is not complete yet. */
  #midHead = false;

  constructor(server: HttpServer, socket: net.Socket) {
    this.#server = server;
    this.socket = socket;
    this.headersStartedAt = clockNow();
    socket.setNoDelay(true);
    const p = (this.#parser = new HTTPParser());
    p.initialize(HTTPParser.REQUEST, {}, 0, 0); // Node's header size limit (16 KiB) → 431
    // A message's beginning is marked by #onData when a read comes between messages, and by
    // llhttp's callback only for one that begins later in the same read (pipelined): that
    // callback is set when a message completes and taken away before the next read is parsed,
    // so a request in a read of its own costs no call from the parser into JavaScript for it.
    p[kOnMessageBegin] = this.#begin;
    p[kOnHeaders] = (headers: string[], url: string) => {
      // After the head, fields are a chunked body's trailers: lb does not forward them, and they
      // must never become part of the next request's head.
      if (this.#parsing !== null) return;
      for (const h of headers) this.#headerParts.push(h);
      this.#urlPart += url;
    };
    p[kOnHeadersComplete] = this.#onHead;
    p[kOnBody] = (chunk: Buffer) => {
      const body = this.#parsing?.body;
      if (body && !body.destroyed && !body.push(chunk)) this.io.pause();
    };
    p[kOnMessageComplete] = this.#onMessageComplete;
    // Reads go to the buffer all client connections share: the parser copies what it keeps
    // (header strings, body pieces), and an upgrade's head is copied (#onData).
    this.io = new SocketIO(socket, this.#onData, { readBuffer: 'shared' });
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
  }

  get closing(): boolean {
    return this.#server.closing;
  }

  /** The Keep-Alive line of a response that leaves the connection open. */
  get keepAliveField(): string {
    return this.#server.keepAliveField;
  }

  /** Nothing in flight or waiting: safe to close. */
  get idle(): boolean {
    return this.#active === null && this.#queue.length === 0 && this.#parsing === null && !this.#midHead;
  }

  /** Answering a request (the head deadline does not run meanwhile). */
  get busy(): boolean {
    return this.#active !== null;
  }

  #onHead = (
    major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined,
    _status: unknown, _message: unknown, upgrade: boolean, keepAlive: boolean,
  ): number => {
    // The connection is closing (an answer said so, or a parse error): nothing more is taken.
    // 2 stops the parser here.
    if (this.#done) return 2;
    if (headers === undefined) {
      headers = this.#headerParts;
      this.#headerParts = [];
    }
    if (url === undefined || this.#urlPart) {
      url = this.#urlPart + (url ?? '');
      this.#urlPart = '';
    }
    this.headersStartedAt = 0;
    this.#midHead = false;
    const req = new ProxyRequest(methods[method] ?? 'GET', url, headers, major, minor, keepAlive, this.io);
    if (upgrade && this.#server.handlers.onUpgrade && (method === CONNECT || asksForWebSocket(headers))) {
      // Handed over once execute() returns, with the bytes after the head. Only a connection
      // with nothing else in flight can change protocols; otherwise it is refused below.
      this.#upgrade = req;
      return 2;
    }
    this.#parsing = req;
    if (this.#active) {
      this.#queue.push(req);
      if (this.#queue.length >= MAX_QUEUED) this.io.pause();
    } else this.#dispatch(req);
    return 0;
  };

  /** A request head has begun: its deadline runs, the connection is no longer idle. */
  #begin = (): void => {
    if (this.headersStartedAt === 0) this.headersStartedAt = clockNow();
    this.idleSince = 0;
    this.#midHead = true;
  };

  #onMessageComplete = (): void => {
    this.#parser[kOnMessageBegin] = this.#begin; // whatever follows in this read begins a message
    const req = this.#parsing;
    this.#parsing = null;
    if (!req) return;
    req.complete = true;
    req.body?.push(null);
    if (this.idle) this.idleSince = clockNow();
  };

  #dispatch(req: ProxyRequest): void {
    const res = new ProxyResponse(this, req);
    this.#active = res;
    // RFC 9112 §3.2: an HTTP/1.1 request without Host MUST get 400 (node:http does the same).
    if (req.httpVersionMinor >= 1 && req.headers.host === undefined) {
      res.writeHead(400, { 'content-length': 0, connection: 'close' });
      return res.end();
    }
    // RFC 9112 §6.1: a transfer coding the server does not understand gets 501. lb re-frames
    // bodies and would drop the coding (as nginx does, it refuses instead).
    if (req.otherCoding) {
      res.writeHead(501, { 'content-length': 0, connection: 'close' });
      return res.end();
    }
    // Expect (RFC 9110 §10.1.1), as node:http answers it: 100 Continue, or 417 for anything else.
    const expect = req.httpVersionMajor === 1 && req.httpVersionMinor === 1 ? req.headers.expect : undefined;
    if (expect !== undefined) {
      if (!CONTINUE.test(expect)) {
        res.writeHead(417, { 'content-length': 0 });
        return res.end();
      }
      this.io.write(`HTTP/1.1 100 Continue${CRLF}${CRLF}`);
    }
    this.#server.handlers.onRequest(req, res);
  }

  /** The active response ended: close, or answer the next pipelined request, or go idle. */
  finished(res: ProxyResponse): void {
    if (this.#active !== res) return;
    this.#active = null;
    if (res.closeAfter) {
      this.#queue.length = 0;
      return this.close();
    }
    const next = this.#queue.shift();
    if (next) {
      if (this.#queue.length < MAX_QUEUED) this.io.resume();
      return this.#dispatch(next);
    }
    // Nothing more is taken while closing.
    if (this.#server.closing && this.idle) return this.close();
    if (this.idle) this.idleSince = clockNow();
  }

  #onData = (chunk: Buffer): void => {
    let data = chunk;
    // Between messages, bytes other than the empty lines llhttp skips before a request line
    // begin one. After empty lines the callback stays: llhttp reports a message if one follows.
    // Nothing begins on a connection lb has finished with (closing, or after an error answer):
    // its bytes are not read, and it must stay idle so the keep-alive timer closes it.
    if (!this.#done && this.#parsing === null && !this.#midHead && chunk[0] !== 13 && chunk[0] !== 10) {
      this.#begin();
      this.#parser[kOnMessageBegin] = undefined;
    }
    while (!this.#done) {
      const r = this.#parser.execute(data);
      if (r instanceof Error) return this.#parseError(r as ParseError);
      const up = this.#upgrade;
      if (up) {
        this.#upgrade = null;
        if (!this.idle) return void this.socket.destroy(); // an upgrade behind other requests: refuse
        this.#detach();
        // A copy: `data` is a view of the connection's read buffer, which the next read reuses.
        return this.#server.handlers.onUpgrade!(up, this.socket, Buffer.from(data.subarray(r)));
      }
      // llhttp also stops after an Upgrade request answered as a plain one (no upgrade handler,
      // e.g. a redirect listener): parse what follows it in this read too.
      if (r >= data.length || r === 0) return;
      data = data.subarray(r);
    }
  };

  #parseError(err: ParseError): void {
    this.#done = true;
    // Whatever answer goes out, the connection is closed after keepAliveTimeout at the latest,
    // even if the client never closes its side.
    this.idleSince = clockNow();
    // Bytes after a request that closes the connection (HTTP/1.0, Connection: close): ignored.
    if (err.code === 'HPE_CLOSED_CONNECTION') return;
    this.#abortBodies(err);
    const res = this.#active;
    if (res) {
      // A request whose body turned out malformed: whatever was started for it is abandoned
      // (its exchange is aborted on 'close'); once an answer has begun, only closing is left.
      if (res.headersSent) return void this.socket.destroy();
      this.#active = null;
      res.aborted();
    }
    this.#server.handlers.onClientError(err, this.socket);
  }

  /** Called by the server's timer: a head that took longer than headersTimeout. */
  headersTimedOut(): void {
    if (this.#done) return;
    const err: ParseError = new Error('request headers took too long');
    err.code = 'ERR_HTTP_REQUEST_TIMEOUT';
    this.#parseError(err);
  }

  /**
   * The client sent FIN. As node:http (httpAllowHalfOpen off) and HAProxy's `abortonclose`: a
   * client that closed is gone, what it asked for is abandoned (logged 499), not answered into
   * a closed socket.
   */
  #onEnd = (): void => {
    this.#abandon('client closed the connection');
    this.close();
  };

  #onError = (): void => {
    this.socket.destroy();
  };

  #onClose = (): void => {
    this.#abandon('aborted');
    this.#release();
  };

  /** The server stops tracking this connection; its parser is freed. */
  #release(): void {
    this.#server.forget(this);
    closeLater(this.#parser);
  }

  /** The client is gone: nothing more is read, nothing in flight or waiting is answered. */
  #abandon(why: string): void {
    this.#done = true;
    this.#abortBodies(why);
    const res = this.#active;
    this.#active = null;
    this.#queue.length = 0;
    res?.aborted();
  }

  /** Request bodies still being received will never complete. */
  #abortBodies(reason: Error | string): void {
    for (const req of [this.#parsing, ...this.#queue]) {
      const body = req?.body;
      if (!body || req!.complete || body.destroyed) continue;
      body.emit('aborted');
      if (body.listenerCount('error') === 0) {
        body.destroy();
        continue;
      }
      // Made only for a body that is really cut off and heard of: an Error records a stack, and
      // every closing connection comes here (that was 7 % of lb's CPU with a new connection per
      // request). Several bodies cut off at once share it.
      if (typeof reason === 'string') reason = new Error(reason);
      body.destroy(reason);
    }
  }

  /** Stop managing the socket (it was upgraded to another protocol). */
  #detach(): void {
    this.#done = true;
    this.io.detach();
    this.socket.off('end', this.#onEnd);
    this.socket.off('error', this.#onError);
    this.socket.off('close', this.#onClose);
    this.#release();
  }

  /** End the connection once what was written has gone out. */
  close(): void {
    this.#done = true;
    if (!this.socket.writableEnded) this.socket.end();
    // A client that never answers our FIN is not waited for past the keep-alive time.
    this.idleSince = this.idleSince || clockNow();
  }
}

/** net.Server / tls.Server with lb's HTTP/1.1 connection handling. */
export class HttpServer {
  readonly server: net.Server;
  readonly options: ServerOptions;
  readonly handlers: ServerHandlers;
  readonly #connections = new Set<ClientConnection>();
  readonly #timer: NodeJS.Timeout;
  closing = false;
  /** `keep-alive: timeout=N` for responses that leave the connection open (the same on every one). */
  readonly keepAliveField: string;

  constructor(options: ServerOptions, handlers: ServerHandlers) {
    this.options = options;
    this.handlers = handlers;
    this.keepAliveField = `keep-alive: timeout=${Math.floor(options.keepAliveTimeout / 1000)}${CRLF}`;
    const accept = (socket: net.Socket): void => {
      this.#connections.add(new ClientConnection(this, socket));
    };
    // allowHalfOpen: the connection decides what a client's FIN means (#onEnd), not net.
    this.server = options.tls
      ? tls.createServer({ ...options.tls, allowHalfOpen: true }, accept)
      : net.createServer({ allowHalfOpen: true, noDelay: true }, accept);
    // One timer for every connection's head deadline and idle time (node:http's way too).
    const every = Math.max(250, Math.min(1000, Math.floor(Math.min(options.headersTimeout, options.keepAliveTimeout) / 4)));
    this.#timer = setInterval(this.#check, every);
    this.#timer.unref();
    this.server.on('close', () => clearInterval(this.#timer));
  }

  #check = (): void => {
    const now = clockNow();
    const { headersTimeout, keepAliveTimeout } = this.options;
    for (const c of this.#connections) {
      // An answer still draining to a client that keeps reading is not idle time.
      const pending = c.io.pending;
      if (c.idleSince !== 0 && pending !== c.pendingSeen) {
        c.pendingSeen = pending;
        if (pending > 0) c.idleSince = now;
      }
      if (c.idleSince !== 0 && now - c.idleSince >= keepAliveTimeout) c.socket.destroy();
      else if (c.headersStartedAt !== 0 && !c.busy && now - c.headersStartedAt >= headersTimeout) c.headersTimedOut();
    }
  };

  forget(c: ClientConnection): void {
    this.#connections.delete(c);
  }

  /** Connections still open (for graceful close). */
  get connections(): number {
    return this.#connections.size;
  }

  /** Stop accepting; `done` runs once every connection has closed. Idle ones are closed now. */
  close(done: () => void): void {
    this.closing = true;
    this.server.close(() => done());
    this.closeIdleConnections();
  }

  closeIdleConnections(): void {
    for (const c of this.#connections) if (c.idle) c.close();
  }

  closeAllConnections(): void {
    for (const c of this.#connections) c.socket.destroy();
  }
}
