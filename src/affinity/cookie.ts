import type { CookieAffinityConfig } from '../config/types.js';
import type { PoolView } from '../balancer/registry.js';
import { CookieCodec, cookieAge, type RejectReason } from './cookie-codec.js';
import { readCookie, serializeSetCookie } from './cookie-header.js';
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
}

/** The lookup of a request without lb's cookie (never modified by anyone). */
const NONE: Lookup = Object.freeze({ kind: 'none' });
/** Cookie values remembered with their lookup, as the codec's verified-cookie cache. */
const PIN_CACHE = 10_000;

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
   * a returning client costs one map lookup and an expiry check, no decoding or allocation.
   * Bounded, oldest out.
   */
  #pins = new Map<string, Pin>();

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
    const pin: Pin = { kind: 'pinned', backendId, session: { id, issuedAt, lastSeen }, touched: -1 };
    if (decoded.ok) {
      if (this.#pins.size >= PIN_CACHE) this.#pins.delete(this.#pins.keys().next().value!);
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
    const recorded = this.#sessions.touch(sessionId, d.backend.id, expiresAt);
    if (fresh && recorded) was!.touched = this.#sessions.generation;
    this.#onTouch?.(sessionId, d.backend.id, expiresAt);
    if (!value) return undefined;
    const maxAge = Math.max(1, Math.floor((issuedAt + this.#config.maxLife - now) / 1000));
    return serializeSetCookie({ name: this.#config.name, value, secure, domain: this.#config.domain, maxAge });
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
      this.#pins = new Map();
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
