import type { CookieAffinityConfig } from '../config/types.js';
import type { PoolView } from '../balancer/registry.js';
import { CookieCodec, SESSION_AT, cookieAge, detached, type RejectReason } from './cookie-codec.js';
import { readCookie, setCookieAttributes } from './cookie-header.js';
import { SessionTable } from './sessions.js';
import type { Affinity, Decision, Lookup, RequestFacts, TouchSink } from './types.js';

type Pinned = Extract<Lookup, { kind: 'pinned' }>;

/**
 * A pinned lookup as this class makes it: shared by every request that carries the same cookie
 * (read-only to everyone else), with the session table's generation when its session was last
 * recorded (-1: not yet).
 */
interface Pin extends Pinned {
  touched: number;
  /** The cookie value it was decoded from, once the pin cache holds it. */
  cookie?: string;
}

/** The lookup of a request without lb's cookie (never modified by anyone). */
const NONE: Lookup = Object.freeze({ kind: 'none' });
/** The pin cache: 2^PIN_SET_BITS sets of PIN_WAYS slots (32,768 cookies). */
const PIN_SET_BITS = 13;
const PIN_WAYS = 4;

/**
 * Cookie value → its pin, four-way set-associative. The set and a tag (31 bits) come from
 * characters that encode the value's MAC (random per cookie, and chosen by no client: only
 * verified cookies are stored), so a lookup reads the set's four tags from one typed array and
 * compares a pin's cookie only where the tag matches: one string comparison per hit, none for
 * most misses. A new pin goes first in its set, and the set's last (the oldest) leaves. Bounded
 * by construction, and allocated on first use (384 KiB). The `Map` it replaced hashed the
 * freshly sliced 66-character value on every request: with 1,000 clients a returning request
 * cost 170–200 ns more; with 10,000, cache misses cost both about the same (bench/RESULTS.md).
 */
class PinCache {
  #tags: Int32Array | undefined;
  #pins: Array<Pin | undefined> | undefined;
  /** The set and tag of the value last hashed (one lookup at a time: nothing in between yields). */
  #set = 0;
  #tag = 0;

  /**
   * The characters before the last (which holds only two bits of the MAC): four of them, 24
   * random bits, multiplied by an odd constant (Fibonacci hashing), give the set from the top
   * bits; four more, times a second odd constant and XORed with that product, give the tag,
   * never 0 (an empty slot's).
   */
  #hash(value: string): void {
    const n = value.length;
    // Past either end charCodeAt gives NaN, which these operators take as 0.
    const x = value.charCodeAt(n - 2) | (value.charCodeAt(n - 3) << 8) | (value.charCodeAt(n - 4) << 16) | (value.charCodeAt(n - 5) << 24);
    const y = value.charCodeAt(n - 6) | (value.charCodeAt(n - 7) << 8) | (value.charCodeAt(n - 8) << 16) | (value.charCodeAt(n - 9) << 24);
    const mixed = Math.imul(x, 0x9e3779b1);
    this.#set = (mixed >>> (32 - PIN_SET_BITS)) * PIN_WAYS;
    this.#tag = (Math.imul(y, 0x85ebca77) ^ mixed) | 1;
  }

  get(value: string): Pin | undefined {
    const tags = this.#tags;
    if (tags === undefined) return undefined;
    this.#hash(value);
    const tag = this.#tag;
    for (let i = this.#set, end = i + PIN_WAYS; i < end; i++) {
      if (tags[i] !== tag) continue;
      const pin = this.#pins![i]!;
      if (pin.cookie === value) return pin;
    }
    return undefined;
  }

  set(value: string, pin: Pin): void {
    const tags = (this.#tags ??= new Int32Array(PIN_WAYS << PIN_SET_BITS));
    const pins = (this.#pins ??= new Array<Pin | undefined>(PIN_WAYS << PIN_SET_BITS).fill(undefined));
    this.#hash(value);
    const first = this.#set;
    for (let i = first + PIN_WAYS - 1; i > first; i--) {
      tags[i] = tags[i - 1];
      pins[i] = pins[i - 1];
    }
    tags[first] = this.#tag;
    pin.cookie = detached(value);
    pins[first] = pin;
  }

  clear(): void {
    this.#tags?.fill(0);
    this.#pins?.fill(undefined);
  }
}

export interface CookieAffinityDeps {
  config: CookieAffinityConfig;
  /** Effective secrets: config's, or the generated one kept in the state store. */
  secrets: readonly string[];
  now: () => number;
  /** Count rejected cookies by reason (metrics). */
  onReject?: (reason: string) => void;
  onTouch?: TouchSink;
}

/**
 * Signed-cookie affinity (SPEC §3): the cookie names the backend by an opaque token; expiry is
 * carried in the cookie. Re-issued only when last-seen is older than maxIdle/4, so most
 * responses carry no Set-Cookie.
 */
export class CookieAffinity implements Affinity {
  readonly mode = 'cookie' as const;
  readonly codec: CookieCodec;
  readonly #config: CookieAffinityConfig;
  readonly #now: () => number;
  readonly #sessions: SessionTable;
  /** token → backend id, per key id; rebuilt when the pool view changes. */
  #tokens = new Map<string, Map<string, string>>();
  #tokensFor?: PoolView;
  /**
   * Ids that were in the pool and left it, so their cookies re-pin with reason "gone" rather
   * than count as unknown (bounded: the oldest are forgotten first).
   */
  readonly #retired = new Set<string>();
  /**
   * Cookie value → its pinned lookup, for the pool view #tokensFor (emptied when the view changes):
   * a returning client costs one cache lookup and an expiry check, no decoding or allocation.
   */
  readonly #pins = new PinCache();

  constructor(deps: CookieAffinityDeps) {
    this.#config = deps.config;
    this.#now = deps.now;
    this.codec = new CookieCodec(deps.secrets);
    this.#sessions = new SessionTable(deps.now);
    this.#onTouch = deps.onTouch;
  }

  readonly #onTouch?: TouchSink;

  remember(id: string, backendId: string, expiresAt: number): void {
    this.#sessions.touch(id, backendId, expiresAt);
  }

  held(): Array<[string, string]> {
    return this.#sessions.held();
  }

  get cookieName(): string {
    return this.#config.name;
  }

  lookup(req: RequestFacts, view: PoolView): Lookup {
    const raw = readCookie(req.headers.cookie, this.#config.name);
    if (raw === undefined) return NONE;
    const now = this.#now();
    if (this.#tokensFor === view) {
      // A cookie already verified and mapped: while still valid by its own clock, it is the same pin as last time.
      const pin = this.#pins.get(raw);
      if (pin !== undefined && cookieAge(pin.session.issuedAt, pin.session.lastSeen, now, this.#config) === 'valid') return pin;
    }
    const decoded = this.codec.decode(raw, now, this.#config);
    const claims = decoded.ok ? decoded.claims : decoded.idleClaims;
    if (!claims) return { kind: 'rejected', reason: (decoded as { reason: RejectReason }).reason };
    const backendId = this.#tokenMap(view, claims.keyId).get(claims.token);
    if (backendId === undefined) return { kind: 'rejected', reason: decoded.ok ? 'unknown-backend' : 'expired' };
    // Idle by the cookie's clock, but kept alive server-side (an open WebSocket): still valid.
    if (!decoded.ok && !this.#sessions.isLive(claims.sessionId, backendId)) return { kind: 'rejected', reason: 'expired' };
    const { sessionId: id, issuedAt, lastSeen } = claims;
    const pin: Pin = { kind: 'pinned', backendId, session: { id, issuedAt, lastSeen }, touched: -1, cookie: undefined };
    if (decoded.ok) {
      this.#pins.set(raw, pin);
    }
    return pin;
  }

  persist(d: Decision, secure: boolean): string | undefined {
    const now = this.#now();
    const was = d.lookup.kind === 'pinned' ? (d.lookup as Pin) : undefined;
    const pinned = was?.session;
    const fresh = d.result === 'hit' && pinned !== undefined && now - pinned.lastSeen < this.#config.maxIdle / 4;
    // A returning client whose cookie needs no re-issue: its session was recorded here with this
    // very expiry, and nothing has left this table since, so recording it again would change
    // nothing here. The sink (cluster primary, fleet store) is still told: those tables can lose
    // the entry without this one knowing (their own eviction, a re-pin elsewhere, a Redis restart),
    // and a repeated touch is what restores it there before a drain would count it gone.
    if (fresh && was!.touched === this.#sessions.generation) {
      d.sessionId = pinned.id;
      this.#onTouch?.(pinned.id, d.backend.id, this.#expiresAt(pinned.issuedAt, pinned.lastSeen));
      return undefined;
    }
    const issuedAt = pinned ? pinned.issuedAt : now;
    const lastSeen = fresh ? pinned!.lastSeen : now;
    // A rejected cookie's session id is not trusted: the client starts a new session.
    let sessionId: string;
    let value: string | undefined;
    if (pinned) {
      sessionId = pinned.id;
      value = fresh ? undefined : this.codec.encode({ backendId: d.backend.id, sessionId, issuedAt, lastSeen });
    } else ({ sessionId, value } = this.codec.mint(d.backend.id, now));
    d.sessionId = sessionId;
    const expiresAt = this.#expiresAt(issuedAt, lastSeen);
    if (pinned) {
      const recorded = this.#sessions.touch(sessionId, d.backend.id, expiresAt);
      if (fresh && recorded) was!.touched = this.#sessions.generation;
    } else this.#sessions.add(sessionId, this.codec.mintedBytes, SESSION_AT, d.backend.id, expiresAt);
    this.#onTouch?.(sessionId, d.backend.id, expiresAt);
    if (!value) return undefined;
    const maxAge = Math.max(1, Math.floor((issuedAt + this.#config.maxLife - now) / 1000));
    return this.#setCookie(value, secure, maxAge);
  }

  /**
   * Per scheme (index 1: HTTPS), the Set-Cookie attributes last written and their Max-Age: a new
   * session's is always maxLife, so under a flood of them the attributes are formatted once
   * (the number and four concatenations a cookie, otherwise), not once a response.
   */
  readonly #attrs: [string, string] = ['', ''];
  readonly #attrsAge: [number, number] = [-1, -1];

  #setCookie(value: string, secure: boolean, maxAge: number): string {
    const i = secure ? 1 : 0;
    if (this.#attrsAge[i] !== maxAge) {
      this.#attrs[i] = setCookieAttributes({ secure, domain: this.#config.domain, maxAge });
      this.#attrsAge[i] = maxAge;
    }
    return `${this.#config.name}=${value}${this.#attrs[i]}`;
  }

  /** When a session issued and last seen at these times stops being valid (ms). */
  #expiresAt(issuedAt: number, lastSeen: number): number {
    return Math.min(lastSeen + this.#config.maxIdle, issuedAt + this.#config.maxLife);
  }

  #retire(id: string): void {
    this.#retired.add(id);
    if (this.#retired.size > 1000) this.#retired.delete(this.#retired.values().next().value!);
  }

  hold(d: Decision): () => void {
    if (!d.sessionId) return () => undefined;
    return this.#sessions.hold(d.sessionId, d.backend.id, this.#config.maxIdle);
  }

  liveSessions(backendId: string): number {
    return this.#sessions.count(backendId);
  }

  forgetBackend(backendId: string): void {
    this.#sessions.forgetBackend(backendId);
  }

  sweep(part = 1): void {
    this.#sessions.sweep(part);
  }

  #tokenMap(view: PoolView, keyId: string): Map<string, string> {
    if (this.#tokensFor !== view) {
      for (const b of this.#tokensFor?.all ?? []) if (!view.byId.has(b.id)) this.#retire(b.id);
      for (const b of view.all) this.#retired.delete(b.id);
      this.#tokens = new Map();
      this.#pins.clear();
      this.#tokensFor = view;
    }
    let map = this.#tokens.get(keyId);
    if (!map) {
      const ids = [...view.all.map((b) => b.id), ...this.#retired];
      map = new Map(ids.map((id) => [this.codec.tokenFor(id, keyId), id]));
      this.#tokens.set(keyId, map);
    }
    return map;
  }
}
