import type { IncomingHttpHeaders } from 'node:http';
import type { Backend, RepinReason } from '../balancer/types.js';
import type { PoolView } from '../balancer/registry.js';
import type { RejectReason } from './cookie-codec.js';

/** What affinity needs to know about a request (HTTP or WebSocket upgrade). */
export interface RequestFacts {
  headers: IncomingHttpHeaders;
  /** Path and query as received. */
  url: string;
  /** Client address after trustedProxies. */
  clientIp: string;
}

/**
 * The result of reading a request's affinity identity (Envoy: read from the request, write to the
 * response, in two separate calls).
 */
export type Lookup =
  | { kind: 'none'; hashKey?: string }
  | { kind: 'rejected'; reason: RejectReason; hashKey?: string }
  | { kind: 'pinned'; backendId: string; session: SessionInfo; hashKey?: string };

export interface SessionInfo {
  id: string;
  issuedAt: number;
  lastSeen: number;
}

export type AffinityResult = 'hit' | 'new' | 'repin' | 'rejected';

/** Where the request goes and why. Made by balancer/select.ts, the one place affinity and policy meet. */
export interface Decision {
  backend: Backend;
  result: AffinityResult;
  lookup: Lookup;
  /** Set when result is 'repin': the backend the session was on and why it moved. */
  repinnedFrom?: string;
  repinReason?: RepinReason;
  /** Hash mode: no key on the request, so the pool's balancing placed it. */
  fallback?: boolean;
  /** The session identity after persist() (cookie session id or hash key). */
  sessionId?: string;
}

/** Told about every session touch (cluster workers forward them to the primary). */
export type TouchSink = (id: string, backendId: string, expiresAt: number) => void;

export interface Affinity {
  readonly mode: 'cookie' | 'hash' | 'none';
  /** Read the request's identity against the current view. Pure with respect to routing state. */
  lookup(req: RequestFacts, view: PoolView): Lookup;
  /**
   * Place a request that has no usable pin. Returns undefined to let the pool's balancing
   * policy decide (cookie and none modes always do; hash does when the request has no key).
   */
  place?(lookup: Lookup, view: PoolView): Backend | undefined;
  /**
   * Record the decision and return a Set-Cookie value when the client must get a new cookie.
   * Never selects.
   */
  persist(decision: Decision, secure: boolean): string | undefined;
  /** Keep the decision's session alive while a WebSocket uses it; returns the release. */
  hold(decision: Decision): () => void;
  /** Live sessions per backend id (for drain progress). */
  liveSessions(backendId: string): number;
  /** Forget the sessions of a backend (its drain deadline passed, or it was removed). */
  forgetBackend(backendId: string): void;
  /**
   * Periodic housekeeping (expired sessions): `part` of it per call, so that a large table is
   * swept over several calls without stalling requests (1, the default: all of it now).
   */
  sweep(part?: number): void;
  /** Cluster primary: a session (or hash key) a worker saw, so counts cover every worker. */
  remember?(id: string, backendId: string, expiresAt: number): void;
  /**
   * Cluster primary, hash mode: the keys remembered on a backend, sent to every worker when it
   * starts draining (a key seen by one worker must stay there whichever worker it reaches next).
   */
  keysOf?(backendId: string): string[];
  /** Cluster worker: sessions kept alive by open WebSockets here (re-announced while held). */
  held?(): Array<[id: string, backendId: string]>;
}
