import type { CookieAffinityConfig } from '../config/types.js';
import type { PoolView } from '../balancer/registry.js';
import { CookieCodec, type RejectReason } from './cookie-codec.js';
import { readCookie, serializeSetCookie } from './cookie-header.js';
import { SessionTable } from './sessions.js';
import type { Affinity, Decision, Lookup, RequestFacts, TouchSink } from './types.js';

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
    if (raw === undefined) return { kind: 'none' };
    const decoded = this.codec.decode(raw, this.#now(), this.#config);
    const claims = decoded.ok ? decoded.claims : decoded.idleClaims;
    if (!claims) return { kind: 'rejected', reason: (decoded as { reason: RejectReason }).reason };
    const backendId = this.#tokenMap(view, claims.keyId).get(claims.token);
    if (backendId === undefined) return { kind: 'rejected', reason: decoded.ok ? 'unknown-backend' : 'expired' };
    // Idle by the cookie's clock, but kept alive server-side (an open WebSocket): still valid.
    if (!decoded.ok && !this.#sessions.isLive(claims.sessionId, backendId)) return { kind: 'rejected', reason: 'expired' };
    const { sessionId: id, issuedAt, lastSeen } = claims;
    return { kind: 'pinned', backendId, session: { id, issuedAt, lastSeen } };
  }

  persist(d: Decision, secure: boolean): string | undefined {
    const now = this.#now();
    const was = d.lookup.kind === 'pinned' ? d.lookup : undefined;
    const pinned = was?.session;
    const fresh = d.result === 'hit' && pinned !== undefined && now - pinned.lastSeen < this.#config.maxIdle / 4;
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
    const expiresAt = Math.min(lastSeen + this.#config.maxIdle, issuedAt + this.#config.maxLife);
    this.#sessions.touch(sessionId, d.backend.id, expiresAt);
    this.#onTouch?.(sessionId, d.backend.id, expiresAt);
    if (!value) return undefined;
    const maxAge = Math.max(1, Math.floor((issuedAt + this.#config.maxLife - now) / 1000));
    return serializeSetCookie({ name: this.#config.name, value, secure, domain: this.#config.domain, maxAge });
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

  sweep(): void {
    this.#sessions.sweep();
  }

  #tokenMap(view: PoolView, keyId: string): Map<string, string> {
    if (this.#tokensFor !== view) {
      for (const b of this.#tokensFor?.all ?? []) if (!view.byId.has(b.id)) this.#retire(b.id);
      for (const b of view.all) this.#retired.delete(b.id);
      this.#tokens = new Map();
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
