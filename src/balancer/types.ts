import type { Dispatcher } from 'undici';
import type { UpstreamPool } from '../proxy/upstream.js';

export type AdminState = 'active' | 'draining' | 'drained' | 'maint';
export type Health = 'unknown' | 'healthy' | 'unhealthy';
/** Why a session was moved off its backend. */
export type RepinReason = 'gone' | 'maint' | 'down' | 'deadline';

/**
 * One app server. Identity and admin state are owned by the Registry (the one writer);
 * the counters are hot-path tallies incremented by the proxy and read by policies.
 */
export interface Backend {
  readonly id: string;
  readonly pool: string;
  readonly url: URL;
  /** Origin string for undici ("http://host:port"). */
  readonly origin: string;
  weight: number;
  adminState: AdminState;
  /** Health flags with separate owners: active checker and passive outlier detection. */
  activeHealth: Health;
  passiveDown: boolean;
  version?: string;
  /** requireSameVersion: its version differs from the pool's majority (set by the Registry). */
  versionOdd?: boolean;
  /** When it last became healthy (ms), for slow start. */
  healthySince: number;
  drainStartedAt?: number;
  /** Set by the drain monitor when it declares the backend drained. */
  drainedBy?: 'idle' | 'deadline';
  drainDeadline?: number;
  inFlight: number;
  websockets: number;
  /** undici Pool for health probes and broadcasts. */
  dispatcher: Dispatcher;
  /** lb's own keep-alive client for proxied requests (the hot path). */
  upstream: UpstreamPool;
}

export function health(b: Backend): Health {
  if (b.passiveDown) return 'unhealthy';
  return b.activeHealth;
}

/** May the backend take *new* sessions? (Caddy's Available().) */
export function acceptsNew(b: Backend): boolean {
  return b.adminState === 'active' && health(b) !== 'unhealthy' && !b.versionOdd;
}

/** May the backend keep serving its *existing* sessions? */
export function servesExisting(b: Backend): boolean {
  return b.adminState !== 'maint' && health(b) !== 'unhealthy';
}

/** Why an existing session can no longer be served, or undefined if it can. */
export function repinReason(b: Backend | undefined): RepinReason | undefined {
  if (!b) return 'gone';
  if (b.adminState === 'maint') return 'maint';
  if (health(b) === 'unhealthy') return 'down';
  return undefined;
}
