import { getRandomValues, randomBytes } from 'node:crypto';
import { withoutCookie } from '../affinity/cookie-header.js';

/**
 * Request header transforms (node-http-proxy's passes, STYLE rule 7): small named functions in
 * one explicit ordered list. The pipeline copies the client's raw headers once into a fresh
 * flat [name, value, …] list that it owns; each step edits only that list (in place, or by
 * returning a new one), never the request.
 */
export type HeaderList = string[];

export interface HeaderContext {
  /** Peer address of the client socket. */
  peer: string;
  /** Whether the peer is a trusted proxy whose X-Forwarded-* we keep. */
  trusted: boolean;
  proto: 'http' | 'https';
  /** Port of the listener that took the request. */
  port: number;
  affinityCookie?: string;
  repinned?: string;
  requestId: string;
  forwarded: boolean;
}

/** RFC 9110 §7.6.1 hop-by-hop fields, plus legacy ones. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate',
  // Node answers `Expect: 100-continue` itself; the backend gets the body without it.
  'expect',
]);

/** Fields a client may not remove by naming them in Connection: lb adds or relies on them. */
const PROTECTED = new Set([
  'host', 'cookie', 'authorization', 'content-length', 'content-type', 'x-request-id', 'x-forwarded-for',
  'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded',
]);

/** Fields lb sets itself; a client's copies are dropped (unless from a trusted proxy, for X-Forwarded-*). */
const LB_OWNED = new Set(['x-lb-repinned']);
const FORWARDED_FIELDS = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded']);

/**
 * Is header field name `field` the lower-case `lowerName`? ASCII case folding, letters only (field
 * names are ASCII tokens: RFC 9110 §5.1), compared in place: no lower-cased copy per call.
 * `lowerName` must be lower case (every caller passes a literal); an upper-case letter in it
 * matches only itself.
 */
export function fieldIs(field: string, lowerName: string): boolean {
  const n = lowerName.length;
  if (field.length !== n) return false;
  for (let i = 0; i < n; i++) {
    const c = field.charCodeAt(i);
    const l = lowerName.charCodeAt(i);
    if (c !== l && !(l >= 0x61 && l <= 0x7a && c === l - 0x20)) return false;
  }
  return true;
}

/**
 * Is a Transfer-Encoding value just `chunked`? lb takes every body apart and frames it again for
 * the other side, so it can pass on no other coding without saying so (a gzip coding relayed as
 * identity would reach the client as corrupt data).
 */
export function isChunked(value: string): boolean {
  return value.length === 7 ? fieldIs(value, 'chunked') : value.trim().toLowerCase() === 'chunked';
}

/**
 * Does an Upgrade request ask for WebSocket (its first Upgrade field is exactly that), the one
 * protocol lb switches to? Any other (h2c from
 * `curl --http2`, TLS/1.0) is answered as the plain request it also is: RFC 9110 §7.8 lets a
 * server ignore Upgrade, as nginx and HAProxy do (and the field is hop-by-hop: never forwarded).
 */
export function asksForWebSocket(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) if (fieldIs(raw[i], 'upgrade')) return raw[i + 1].trim().toLowerCase() === 'websocket';
  return false;
}

export function get(h: HeaderList, name: string): string | undefined {
  for (let i = 0; i < h.length; i += 2) if (fieldIs(h[i], name)) return h[i + 1];
  return undefined;
}

/**
 * Replace every `name` field with one `name: value`. Edits `h` in place: steps only ever see
 * the list the pipeline copied for this request (see requestHeaders), never the request's own.
 */
function set(h: HeaderList, name: string, value: string): HeaderList {
  for (let i = h.length - 2; i >= 0; i -= 2) if (fieldIs(h[i], name)) h.splice(i, 2);
  h.push(name, value);
  return h;
}

/** Names listed in Connection (RFC 9110 §7.6.1), minus the protected ones; undefined when none. */
function connectionListed(raw: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (!fieldIs(raw[i], 'connection')) continue;
    for (const token of raw[i + 1].split(',')) {
      const name = token.trim().toLowerCase();
      if (name && !PROTECTED.has(name)) (listed ??= new Set()).add(name);
    }
  }
  return listed;
}

/**
 * A fixed set of lower-case field names, each with a value, matched in any case by fieldIs
 * against only the names of the same length: no lower-cased copy, and most fields have no
 * candidate to compare at all. Used where every request or response field is checked.
 */
class FieldNames<T> {
  readonly #byLength: Array<Array<readonly [string, T]> | undefined> = [];

  constructor(entries: Iterable<readonly [string, T]>) {
    for (const entry of entries) (this.#byLength[entry[0].length] ??= []).push(entry);
  }

  /** The value of `field`'s name, or undefined when it is not in the set. */
  get(field: string): T | undefined {
    const candidates = this.#byLength[field.length];
    if (candidates !== undefined) for (const [name, value] of candidates) if (fieldIs(field, name)) return value;
    return undefined;
  }
}

/** What stripHopByHop drops: hop-by-hop and lb-owned fields always (true), forwarding fields unless from a trusted proxy (false). */
const STRIPPED = new FieldNames<boolean>([
  ...[...HOP_BY_HOP, ...LB_OWNED].map((n) => [n, true] as const),
  ...[...FORWARDED_FIELDS].map((n) => [n, false] as const),
]);
/** The hop-by-hop fields, as responseHeaders drops them. */
const HOP = new FieldNames([...HOP_BY_HOP].map((n) => [n, true] as const));

/** Copy, dropping hop-by-hop fields, those named in Connection, and lb-owned/untrusted forwarding fields. */
export function stripHopByHop(raw: readonly string[], ctx: HeaderContext): HeaderList {
  const listed = connectionListed(raw);
  const out: HeaderList = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const always = STRIPPED.get(name);
    if (always === true || (always === false && !ctx.trusted)) continue;
    if (listed !== undefined && listed.has(name.toLowerCase())) continue;
    out.push(name, raw[i + 1]);
  }
  return out;
}

export function stripAffinityCookie(h: HeaderList, ctx: HeaderContext): HeaderList {
  const name = ctx.affinityCookie;
  if (!name) return h;
  // In place (the list is the pipeline's own copy: stripHopByHop made it), closing up behind a
  // removed field rather than splicing it out (splice allocates the array it returns).
  let kept = 0;
  for (let i = 0; i < h.length; i += 2) {
    let value = h[i + 1];
    if (fieldIs(h[i], 'cookie')) {
      const rest = withoutCookie(value, name);
      if (rest === undefined) continue;
      value = rest;
    }
    if (kept !== i) h[kept] = h[i];
    h[kept + 1] = value;
    kept += 2;
  }
  while (h.length > kept) h.pop();
  return h;
}

/**
 * Append the peer to X-Forwarded-For. A trusted proxy's chain is kept; from any other peer,
 * stripHopByHop (first in the pipeline) dropped every forwarding field, so lb's are appended
 * without looking for earlier copies.
 */
export function forwardedFor(h: HeaderList, ctx: HeaderContext): HeaderList {
  if (!ctx.trusted) {
    h.push('x-forwarded-for', ctx.peer);
    return h;
  }
  const prior: string[] = [];
  for (let i = 0; i < h.length; i += 2) if (fieldIs(h[i], 'x-forwarded-for')) prior.push(h[i + 1]);
  const chain = prior.length ? `${prior.join(', ')}, ${ctx.peer}` : ctx.peer;
  return set(h, 'x-forwarded-for', chain);
}

let portNumber = -1;
let portText = '';
/** A listener's port as text (the same few ports every request: formatted once per change). */
function portString(port: number): string {
  if (port !== portNumber) {
    portNumber = port;
    portText = String(port);
  }
  return portText;
}

/** X-Forwarded-Proto, -Host and -Port: a trusted proxy's values are kept; otherwise lb's are appended (see forwardedFor). */
export function forwardedProtoHostPort(h: HeaderList, ctx: HeaderContext): HeaderList {
  const host = get(h, 'host');
  if (!ctx.trusted) {
    h.push('x-forwarded-proto', ctx.proto);
    if (host !== undefined) h.push('x-forwarded-host', host);
    h.push('x-forwarded-port', portString(ctx.port));
    return h;
  }
  let out = h;
  if (!get(out, 'x-forwarded-proto')) out = set(out, 'x-forwarded-proto', ctx.proto);
  if (host !== undefined && !get(out, 'x-forwarded-host')) out = set(out, 'x-forwarded-host', host);
  if (!get(out, 'x-forwarded-port')) out = set(out, 'x-forwarded-port', portString(ctx.port));
  return out;
}

/** RFC 7239 `Forwarded`, when enabled. */
export function rfc7239(h: HeaderList, ctx: HeaderContext): HeaderList {
  if (!ctx.forwarded) return h;
  const forIp = ctx.peer.includes(':') ? `"[${ctx.peer}]"` : ctx.peer;
  const host = get(h, 'host');
  const element = `for=${forIp};proto=${ctx.proto}${host ? `;host="${host.replace(/["\\]/g, '')}"` : ''}`;
  const prior = get(h, 'forwarded');
  return set(h, 'forwarded', prior ? `${prior}, ${element}` : element);
}

export function requestIdHeader(h: HeaderList, ctx: HeaderContext): HeaderList {
  return get(h, 'x-request-id') === ctx.requestId ? h : set(h, 'x-request-id', ctx.requestId);
}

export function repinnedHeader(h: HeaderList, ctx: HeaderContext): HeaderList {
  return ctx.repinned ? set(h, 'x-lb-repinned', ctx.repinned) : h;
}

type Step = (h: HeaderList, ctx: HeaderContext) => HeaderList;

/** The order is the contract: strip first, then add, so nothing a client sends can remove what lb adds. */
export const REQUEST_PIPELINE: readonly Step[] = [
  stripAffinityCookie,
  forwardedFor,
  forwardedProtoHostPort,
  rfc7239,
  requestIdHeader,
  repinnedHeader,
];

export function requestHeaders(raw: readonly string[], ctx: HeaderContext): HeaderList {
  let h = stripHopByHop(raw, ctx);
  for (const step of REQUEST_PIPELINE) h = step(h, ctx);
  return h;
}

const REQUEST_ID_OK = /^[\x21-\x7e]{1,200}$/;

/**
 * The first 20 hex digits of every request id this process generates: 74 random bits, and the
 * version (8) and variant nibbles of an RFC 9562 UUIDv8, so ids stay UUID-shaped.
 */
function idPrefix(): string {
  const h = randomBytes(10).toString('hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-`;
}

let idPrefixNow = idPrefix();
/** Requests numbered since start (48 bits; a new prefix if it ever runs out). */
let idCounter = 0;
/** Round keys of the permutation that hides the count in the id. */
const ID_KEYS = getRandomValues(new Uint32Array(4));

/** Two hex digits per byte value: a 24-bit number in hex by three lookups (toString(16) is a runtime call, ~2× slower). */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const hex6 = (x: number): string => HEX[x >>> 16] + HEX[(x >>> 8) & 0xff] + HEX[x & 0xff];

/**
 * A new request id, unique per process: the random prefix, then the request's number put through
 * a keyed 4-round Feistel permutation of 48 bits (a bijection, so numbers never collide, and ids
 * do not show at a glance how many requests came between two of them; not a cipher). randomUUID per request cost ~2 % of a
 * proxied request's CPU (--cpu-prof); ids need to be unique, not secret.
 */
export function newRequestId(): string {
  if (idCounter === 2 ** 48) {
    idPrefixNow = idPrefix();
    idCounter = 0;
  }
  const n = idCounter++;
  let hi = Math.floor(n / 0x1000000);
  let lo = n % 0x1000000;
  for (let r = 0; r < 4; r++) {
    const t = lo;
    lo = hi ^ ((Math.imul(lo ^ ID_KEYS[r], 0x9e3779b1) >>> 8) & 0xffffff);
    hi = t;
  }
  return idPrefixNow + hex6(hi) + hex6(lo);
}

/** Keep a sane incoming X-Request-Id, else generate one. */
export function requestIdOf(incoming: string | string[] | undefined): string {
  const v = Array.isArray(incoming) ? incoming[0] : incoming;
  return v !== undefined && REQUEST_ID_OK.test(v) ? v : newRequestId();
}

/**
 * Drops the response fields that must not be relayed (RFC 9110 §7.6.1) from the backend's raw
 * [name, value, …] list, in place (the list is the exchange's own, made by the parser for this
 * response), and returns it; lb frames the response itself.
 */
export function responseHeaders(raw: string[]): string[] {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (!fieldIs(raw[i], 'connection')) continue;
    const value = raw[i + 1];
    // What nearly every backend sends, and names nothing to drop: no split, no lower-cased copy.
    if (fieldIs(value, 'keep-alive') || fieldIs(value, 'close')) continue;
    for (const t of value.split(',')) {
      const name = t.trim().toLowerCase();
      // `keep-alive` and `close` name fields that are dropped anyway: most responses list nothing else.
      if (name !== 'keep-alive' && name !== 'close' && name) (listed ??= new Set()).add(name);
    }
  }
  let kept = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (HOP.get(name) || (listed !== undefined && listed.has(name.toLowerCase()))) continue;
    if (kept !== i) {
      raw[kept] = name;
      raw[kept + 1] = raw[i + 1];
    }
    kept += 2;
  }
  raw.length = kept;
  return raw;
}
