import type { Registry } from '../balancer/registry.js';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { AdminState, Backend, Health } from '../balancer/types.js';
import type { LbConfig } from '../config/types.js';
import type { PersistedState } from '../state/types.js';

/**
 * `workers: N` (SPEC §8): the primary owns backend state (admin API, health checks, drain
 * monitor, state store) and mirrors every change to the workers, which proxy. These are the
 * messages over the cluster IPC channel. Each change carries a sequence number; the admin API
 * answers only after every worker acknowledged it.
 */
export interface BackendState {
  id: string;
  pool: string;
  url: string;
  weight: number;
  adminState: AdminState;
  activeHealth: Health;
  passiveDown: boolean;
  version?: string;
  healthySince: number;
  drainStartedAt?: number;
  drainDeadline?: number;
}

export type ToWorker =
  /**
   * The config is the one the primary runs (validated there; a worker never parses the file, so a
   * replacement runs what its siblings run even after an unreloaded edit). `file` is its path.
   */
  | { t: 'lb:init'; seq: number; state: PersistedState; backends: BackendState[]; config: LbConfig; file: string }
  /** One Registry change; with neither field, only a request for a fresh report (then the ack). */
  | { t: 'lb:sync'; seq: number; upsert?: BackendState; remove?: string }
  | { t: 'lb:deadline'; id: string }
  /** Hash keys the fleet's workers saw on a draining backend: they stay there (SPEC §3). */
  | { t: 'lb:remember'; pool: string; backend: string; keys: string[] }
  /** A config reload, in sequence before the syncs it causes (which may refer to the pools it adds). */
  | { t: 'lb:reload'; seq: number; state: PersistedState; config: LbConfig }
  | { t: 'lb:tls' }
  /** Asks for this worker's metrics (answered with lb:metrics and the same id). */
  | { t: 'lb:metrics'; id: number }
  | { t: 'lb:stop'; grace: number };

/** Per backend: [inFlight, websockets, requests answered, 5xx answered] (the last two are running totals). */
export type BackendReport = [number, number, number, number];

export type ToPrimary =
  | { t: 'lb:hello' }
  | { t: 'lb:ready' }
  /** The worker could not start (sent just before it exits): the primary logs it, and fails a first start with it. */
  | { t: 'lb:failed'; error: string }
  | { t: 'lb:ack'; seq: number }
  /** The worker's registry as prom-client's getMetricsAsJSON() gives it. */
  | { t: 'lb:metrics'; id: number; metrics: MetricsJson }
  | {
      t: 'lb:report';
      backends: Record<string, BackendReport>;
      /** Session touches since the last report: [pool, session id or hash key, backend, expiresAt]. */
      touches: Array<[string, string, string, number]>;
      /** Backends this worker's passive checks want ejected. */
      ejects: string[];
    };

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export function stateOf(b: Backend): BackendState {
  return {
    id: b.id,
    pool: b.pool,
    url: b.url.href,
    weight: b.weight,
    adminState: b.adminState,
    activeHealth: b.activeHealth,
    passiveDown: b.passiveDown,
    version: b.version,
    healthySince: b.healthySince,
    drainStartedAt: b.drainStartedAt,
    drainDeadline: b.drainDeadline,
  };
}

/** Make the worker's mirror of one backend equal to the primary's (through the Registry's setters). */
export function applyState(registry: Registry, s: BackendState): void {
  let b = registry.get(s.id);
  if (b && (b.pool !== s.pool || b.url.href !== new URL(s.url).href)) {
    registry.remove(s.id);
    b = undefined;
  }
  if (!b) b = registry.add({ id: s.id, pool: s.pool, url: s.url, weight: s.weight, rampFrom: s.healthySince });
  registry.setWeight(s.id, s.weight);
  registry.setAdminState(s.id, s.adminState, { deadline: s.drainDeadline });
  registry.setActiveHealth(s.id, s.activeHealth);
  registry.setPassiveDown(s.id, s.passiveDown);
  registry.setVersion(s.id, s.version);
  // Mirror-only fields: the primary's clock decided them.
  b.healthySince = s.healthySince;
  b.drainStartedAt = s.drainStartedAt;
}
