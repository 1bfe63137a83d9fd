import { EventEmitter } from 'node:events';
import type { Dispatcher } from 'undici';
import type { UpstreamPool } from '../proxy/upstream.js';
import type { PoolConfig } from '../config/types.js';
import { acceptsNew, health, type AdminState, type Backend, type Health } from './types.js';

export interface BackendSpec {
  id: string;
  pool: string;
  url: string;
  weight: number;
  /** Slow start ramps from this time (ms). Default now: a backend added live ramps up; at boot lb passes 0 (HAProxy: no slow start at start-up). */
  rampFrom?: number;
}

/** One announcement per real transition (edge-triggered, STYLE rule 5). */
export type RegistryEvent =
  | { type: 'added'; backend: Backend }
  | { type: 'removed'; backend: Backend }
  | { type: 'weight'; backend: Backend; from: number; to: number }
  | { type: 'admin'; backend: Backend; from: AdminState; to: AdminState }
  | { type: 'health'; backend: Backend; from: Health; to: Health; source: 'active' | 'passive' }
  | { type: 'version'; backend: Backend; from?: string; to?: string };

/** The immutable view of a pool that the hot path reads; rebuilt on every change. */
export interface PoolView {
  readonly name: string;
  readonly config: PoolConfig;
  readonly all: readonly Backend[];
  readonly byId: ReadonlyMap<string, Backend>;
  /** Backends that may take new sessions, in id order. */
  readonly eligible: readonly Backend[];
  readonly generation: number;
}

export interface RegistryDeps {
  pools: Record<string, PoolConfig>;
  /** The backend's clients: lb's upstream pool for proxied requests, an undici Pool for probes. */
  makeClients: (b: { id: string; url: URL; pool: PoolConfig }) => { dispatcher: Dispatcher; upstream: UpstreamPool };
  now: () => number;
}

/**
 * The one writer of backend state. Admin state comes from operators, health flags from
 * checkers; both only change through these methods, which report whether anything changed
 * and emit one 'change' event per transition. Views are recomputed per change, never per request.
 */
export class Registry extends EventEmitter<{ change: [RegistryEvent]; view: [PoolView] }> {
  readonly #deps: RegistryDeps;
  readonly #backends = new Map<string, Backend>();
  readonly #views = new Map<string, PoolView>();
  #generation = 0;

  constructor(deps: RegistryDeps) {
    super();
    this.#deps = { ...deps, pools: { ...deps.pools } };
    for (const name of Object.keys(deps.pools)) this.#rebuild(name);
  }

  /** Replace a pool's config (config reload); backends are changed separately. */
  setPoolConfig(config: PoolConfig): void {
    this.#deps.pools[config.name] = config;
    this.#rebuild(config.name);
  }

  pools(): PoolView[] {
    return [...this.#views.values()];
  }

  view(pool: string): PoolView | undefined {
    return this.#views.get(pool);
  }

  get(id: string): Backend | undefined {
    return this.#backends.get(id);
  }

  all(): Backend[] {
    return [...this.#backends.values()];
  }

  add(spec: BackendSpec): Backend {
    const pool = this.#deps.pools[spec.pool];
    if (!pool) throw new Error(`unknown pool "${spec.pool}"`);
    if (this.#backends.has(spec.id)) throw new Error(`backend "${spec.id}" exists`);
    const url = new URL(spec.url);
    const backend: Backend = {
      id: spec.id,
      pool: spec.pool,
      url,
      origin: url.origin,
      weight: spec.weight,
      adminState: 'active',
      activeHealth: pool.healthCheck.enabled ? 'unknown' : 'healthy',
      passiveDown: false,
      healthySince: spec.rampFrom ?? this.#deps.now(),
      inFlight: 0,
      websockets: 0,
      ...this.#deps.makeClients({ id: spec.id, url, pool }),
    };
    this.#backends.set(spec.id, backend);
    this.#changed(spec.pool, { type: 'added', backend });
    return backend;
  }

  /** Stop selecting now; in-flight requests finish, then the connection pool closes. */
  remove(id: string): Backend | undefined {
    const backend = this.#backends.get(id);
    if (!backend) return undefined;
    this.#backends.delete(id);
    this.#changed(backend.pool, { type: 'removed', backend });
    void closeClients(backend);
    return backend;
  }

  setWeight(id: string, weight: number): boolean {
    const b = this.#backends.get(id);
    if (!b || b.weight === weight) return false;
    const from = b.weight;
    b.weight = weight;
    this.#changed(b.pool, { type: 'weight', backend: b, from, to: weight });
    return true;
  }

  setAdminState(id: string, to: AdminState, opts: { deadline?: number } = {}): boolean {
    const b = this.#backends.get(id);
    if (!b) return false;
    if (to === 'draining') {
      b.drainDeadline = opts.deadline;
      b.drainedBy = undefined;
      if (b.adminState !== 'draining') b.drainStartedAt = this.#deps.now();
    } else if (to !== 'drained') {
      b.drainStartedAt = undefined;
      b.drainDeadline = undefined;
    }
    if (b.adminState === to) return false;
    const from = b.adminState;
    b.adminState = to;
    this.#changed(b.pool, { type: 'admin', backend: b, from, to });
    return true;
  }

  setActiveHealth(id: string, to: Health): boolean {
    return this.#setHealth(id, 'active', (b) => {
      b.activeHealth = to;
    });
  }

  setPassiveDown(id: string, down: boolean): boolean {
    return this.#setHealth(id, 'passive', (b) => {
      b.passiveDown = down;
    });
  }

  setVersion(id: string, version: string | undefined): boolean {
    const b = this.#backends.get(id);
    if (!b || b.version === version) return false;
    const from = b.version;
    b.version = version;
    this.#changed(b.pool, { type: 'version', backend: b, from, to: version });
    return true;
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map(closeClients));
  }

  #setHealth(id: string, source: 'active' | 'passive', apply: (b: Backend) => void): boolean {
    const b = this.#backends.get(id);
    if (!b) return false;
    const from = health(b);
    apply(b);
    const to = health(b);
    if (from === to) return false;
    // Back from down: slow start ramps it from now (unknown → healthy at boot is no comeback).
    if (from === 'unhealthy') b.healthySince = this.#deps.now();
    this.#changed(b.pool, { type: 'health', backend: b, from, to, source });
    return true;
  }

  /**
   * Same-version guard (SPEC §5): the pool's majority version is the one most backends report;
   * with `requireSameVersion`, a backend reporting another one takes no new sessions until it
   * matches. A tie has no majority, so nobody is kept out (but the pool is still mixed).
   */
  #versionGuard(all: Backend[], require: boolean): void {
    const majority = majorityVersion(all);
    for (const b of all) b.versionOdd = require && majority !== undefined && b.version !== undefined && b.version !== majority;
  }

  #changed(pool: string, event: RegistryEvent): void {
    this.#rebuild(pool);
    this.emit('change', event);
  }

  #rebuild(pool: string): void {
    const config = this.#deps.pools[pool];
    const all = [...this.#backends.values()].filter((b) => b.pool === pool).sort((a, b) => (a.id < b.id ? -1 : 1));
    this.#versionGuard(all, config?.requireSameVersion === true);
    const view: PoolView = Object.freeze({
      name: pool,
      config,
      all: Object.freeze(all),
      byId: new Map(all.map((b) => [b.id, b])),
      eligible: Object.freeze(all.filter(acceptsNew)),
      generation: ++this.#generation,
    });
    this.#views.set(pool, view);
    this.emit('view', view);
  }
}

/** The version most backends of a pool report, or undefined when none or tied. */
export function majorityVersion(all: readonly Backend[]): string | undefined {
  const counts = new Map<string, number>();
  for (const b of all) if (b.version !== undefined) counts.set(b.version, (counts.get(b.version) ?? 0) + 1);
  let best: string | undefined;
  let bestN = 0;
  let tie = false;
  for (const [v, n] of counts) {
    if (n > bestN) [best, bestN, tie] = [v, n, false];
    else if (n === bestN) tie = true;
  }
  return tie ? undefined : best;
}

function closeClients(b: Backend): Promise<unknown> {
  return Promise.all([b.dispatcher.close().catch(() => undefined), b.upstream.close()]);
}
