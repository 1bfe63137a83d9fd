import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { accessLogger } from './log.js';
import { Pool, type Dispatcher } from 'undici';
import { UpstreamPool, UPSTREAM_DEFAULTS } from './proxy/upstream.js';
import type { SecureContextOptions } from 'node:tls';
import type { LbConfig, PoolConfig, TlsConfig } from './config/types.js';
import { Registry } from './balancer/registry.js';
import { Balancer } from './balancer/balancer.js';
import type { Affinity, TouchSink } from './affinity/types.js';
import type { Backend } from './balancer/types.js';
import { CookieAffinity } from './affinity/cookie.js';
import { NoAffinity } from './affinity/none.js';
import { HashAffinity } from './affinity/hash.js';
import { Router } from './proxy/routes.js';
import { trustList } from './proxy/cidr.js';
import { createHttpHandler, type AccessRecord } from './proxy/http-handler.js';
import type { ForwardOutcome } from './proxy/forward.js';
import { openListener, type Listener } from './proxy/listeners.js';
import { loadTlsOptions, tlsFiles, watchTls } from './proxy/tls.js';
import { FileStateStore, MemoryStateStore } from './state/file-store.js';
import { RedisStateStore } from './state/redis-store.js';
import { emptyState, type PersistedState, type StateStore } from './state/types.js';
import { applyConfigDiff } from './reload.js';
import { DrainMonitor } from './balancer/drain.js';
import { sessionsEnded } from './balancer/select.js';
import { ApiError } from './admin/errors.js';
import { request } from 'undici';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Control } from './admin/control.js';
import { openAdminServer } from './admin/server.js';
import { Insight } from './admin/insight.js';
import { WsRegistry } from './ws/registry.js';
import { createUpgradeHandler } from './ws/upgrade.js';
import { CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART } from './ws/frames.js';
import type { RouteFacts } from './proxy/routes.js';
import { ActiveChecker } from './health/active.js';
import { PassiveHealth } from './health/passive.js';
import { Metrics } from './metrics/metrics.js';
import { now as clockNow } from './util/clock.js';
import { metricsMount, streamMount, dashboardMount } from './admin/live.js';

/** Housekeeping of session tables: this part of each table per call, a call this often. */
const SWEEP_PART = 1 / 20;
const SWEEP_EVERY_MS = 250;

export interface AppOptions {
  config: LbConfig;
  logger: Logger;
  now?: () => number;
  random?: () => number;
  store?: StateStore;
  /** Re-reads the config for admin reloads; without it, reload re-applies the running config. */
  loadConfig?: () => LbConfig;
  /**
   * `single` (default): everything in one process. With `workers: N` (src/cluster): the
   * `primary` owns state (admin API, health checks, drains, store) and opens no listener; each
   * `worker` proxies and mirrors the primary's state.
   */
  role?: 'single' | 'primary' | 'worker';
  /** Worker: the primary's state document (the worker never reads or writes the store). */
  state?: PersistedState;
  /** Worker: every session touch, to forward to the primary. */
  onTouch?: (pool: string, id: string, backendId: string, expiresAt: number) => void;
  /** Worker: passive health wants this backend ejected (the primary decides). */
  onEject?: (b: Backend) => void;
}

/**
 * The composition root: the only place that constructs things and wires events.
 */
export class App {
  config: LbConfig;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly balancer: Balancer;
  readonly store: StateStore;
  readonly drains: DrainMonitor;
  readonly websockets: WsRegistry;
  readonly health: ActiveChecker;
  readonly metrics: Metrics;
  readonly passive: PassiveHealth;
  /** Per pool, the last announced version situation (see #checkVersions). */
  readonly #versionState = new Map<string, string>();
  readonly now: () => number;
  readonly listeners: Listener[] = [];
  control?: Control;
  admin?: http.Server;
  state: PersistedState;
  readonly #now: () => number;
  #router: Router;
  readonly #undo: Array<() => void> = [];
  #stopping?: Promise<void>;
  readonly role: 'single' | 'primary' | 'worker';
  readonly #onTouch?: AppOptions['onTouch'];
  /** Primary: resolves once every worker has applied the latest change (admin API barrier). */
  afterPersist?: () => Promise<void>;
  /** Primary: resolves once every worker reported its in-flight, WebSockets and sessions afresh (or after a timeout). */
  freshReports?: () => Promise<void>;
  /** Primary: extra readiness (all workers listening). */
  readyExtra?: () => boolean;
  /** Primary: /metrics text including the workers' aggregated metrics. */
  metricsText?: () => Promise<string>;
  /** Primary: request tallies reported by workers, for the dashboard's rates. */
  tallies?: (b: Backend) => { total: number; errors: number };

  private constructor(o: Required<Omit<AppOptions, 'state' | 'onTouch' | 'onEject'>> & AppOptions, state: PersistedState) {
    this.role = o.role;
    // Session touches go to the cluster primary (workers) or to the shared store (fleet).
    const fleet = o.store instanceof RedisStateStore ? o.store : undefined;
    this.#onTouch = o.onTouch ?? (fleet ? (pool, id, backend, expiresAt) => fleet.touch(pool, id, backend, expiresAt) : undefined);
    this.config = o.config;
    this.logger = o.logger;
    this.store = o.store;
    this.state = state;
    this.#now = o.now;
    this.now = o.now;
    this.#router = new Router(o.config.routes);
    this.registry = new Registry({
      pools: { ...o.config.pools },
      now: o.now,
      makeClients: ({ url, pool }) => ({ dispatcher: this.#dispatcher(url, pool), upstream: this.#upstream(url, pool) }),
    });
    this.balancer = new Balancer({
      registry: this.registry,
      now: o.now,
      random: o.random,
      makeAffinity: (pool) => this.#affinity(pool),
    });
    for (const pool of Object.values(o.config.pools)) {
      for (const b of pool.backends) this.registry.add({ id: b.id, pool: pool.name, url: b.url, weight: b.weight, rampFrom: 0 });
    }
    this.#applyOverlay(state);
    // Workers mirror drain outcomes from the primary; only single/primary run the monitor.
    this.drains = new DrainMonitor({ registry: this.registry, balancer: this.balancer, now: o.now, intervalMs: o.role === 'worker' ? 0 : 500 });
    this.#undo.push(() => this.drains.close());
    this.websockets = new WsRegistry(o.random, (b) => {
      if (this.#stopping) return CLOSE_GOING_AWAY;
      return this.registry.get(b.id) !== b || sessionsEnded(b, o.now()) ? CLOSE_SERVICE_RESTART : 0;
    });
    // At a drain deadline, the backend's WebSocket clients get 1012 Service Restart, spread over time.
    this.drains.on('deadline', (b) => {
      this.logger.info({ event: 'drain.deadline', backend: b.id, websockets: b.websockets }, `drain deadline of ${b.id}`);
      void this.websockets.closeWhere((x) => x === b, CLOSE_SERVICE_RESTART, this.config.websocket.closeRate);
    });
    const poolConfig = (p: string): PoolConfig | undefined => this.registry.view(p)?.config;
    // Workers take health from the primary, which checks once for all of them.
    this.health = new ActiveChecker({ registry: this.registry, config: (p) => poolConfig(p)?.healthCheck, random: o.random, now: o.now, scheduled: o.role !== 'worker' });
    this.#undo.push(() => this.health.close());
    this.metrics = new Metrics({
      registry: this.registry,
      balancer: this.balancer,
      drains: this.drains,
      // Workers count traffic, the primary reports state; one process does both.
      parts: o.role === 'worker' ? { traffic: true, state: false } : o.role === 'primary' ? { traffic: false, state: true } : { traffic: true, state: true },
    });
    this.health.on('probe', (r) => this.metrics.probe(r));
    this.health.on('probe', (r) =>
      this.logger.debug({ event: 'health.probe', backend: r.backend.id, ok: r.ok, ms: r.ms, reason: r.reason, version: r.version }, 'health probe'),
    );
    this.passive = new PassiveHealth({
      registry: this.registry,
      config: (p) => poolConfig(p)?.passiveHealth,
      recheck: async (b) => (await this.health.probeNow(b))?.ok,
      eject: o.onEject,
    });
    this.#undo.push(() => this.passive.close());
    this.registry.on('change', (e) => {
      if (e.type === 'version' || e.type === 'added' || e.type === 'removed') this.#checkVersions(e.backend.pool);
    });
    this.registry.on('change', (e) => {
      const from = 'from' in e ? e.from : undefined;
      const to = 'to' in e ? e.to : undefined;
      const source = e.type === 'health' ? e.source : undefined;
      this.logger.info({ event: `backend.${e.type}`, backend: e.backend.id, pool: e.backend.pool, from, to, source }, `backend ${e.backend.id} ${e.type}${to === undefined ? '' : ` ${to}`}`);
      // maint stops all traffic at once: its WebSockets are closed (1012) without waiting for a deadline;
      // a removed backend's tunnels are ended the same way.
      if ((e.type === 'admin' && e.to === 'maint') || e.type === 'removed') {
        void this.websockets.closeWhere((x) => x === e.backend, CLOSE_SERVICE_RESTART, this.config.websocket.closeRate);
      }
    });
  }

  static async start(opts: AppOptions): Promise<App> {
    const role = opts.role ?? 'single';
    const o = {
      ...opts,
      config: opts.config,
      logger: opts.logger,
      loadConfig: opts.loadConfig ?? (() => opts.config),
      now: opts.now ?? clockNow,
      random: opts.random ?? Math.random,
      store: opts.store ?? App.#storeFor(opts.config, role, opts.logger),
      role,
    };
    const state = opts.state ?? (await o.store.load()) ?? emptyState();
    const app = new App(o, state);
    if (o.store instanceof RedisStateStore) app.#joinFleet(o.store);
    try {
      if (role !== 'worker') await app.#ensureCookieSecret();
      if (role !== 'worker') app.health.sync();
      if (role !== 'primary') await app.#listen();
      if (o.config.admin.enabled && role !== 'worker') await app.#openAdmin(o.loadConfig);
    } catch (err) {
      // A start that fails half-way (admin port taken, admin not loopback without a token…)
      // must not leave listeners serving: undo what started, then report.
      await app.stop(0).catch(() => undefined);
      throw err;
    }
    // Expired sessions out: a twentieth of each table every 250 ms, a pass about every 5 s (longer
    // while many expire: a removal counts as a look). One call every 5 s over a table at its cap
    // (a million sessions) stalled requests for ~25 ms.
    const sweep = setInterval(() => app.balancer.sweep(SWEEP_PART), SWEEP_EVERY_MS);
    sweep.unref();
    app.#undo.push(() => clearInterval(sweep));
    return app;
  }

  /** Port a listener is bound to, by name. */
  port(name: string): number {
    const l = this.listeners.find((x) => x.config.name === name);
    if (!l) throw new Error(`no listener "${name}"`);
    return l.port();
  }

  /**
   * Announce once when a pool's backends start reporting different versions (and again when the
   * set kept out by requireSameVersion changes), and once when they agree again.
   */
  #checkVersions(pool: string): void {
    const view = this.registry.view(pool);
    if (!view) return;
    const versions: Record<string, string> = {};
    for (const b of view.all) if (b.version !== undefined) versions[b.id] = b.version;
    const mixed = new Set(Object.values(versions)).size > 1;
    const excluded = view.all.filter((b) => b.versionOdd).map((b) => b.id);
    const signature = mixed ? `mixed:${excluded.join(',')}` : 'same';
    const previous = this.#versionState.get(pool);
    if (signature === previous || (previous === undefined && !mixed)) return;
    this.#versionState.set(pool, signature);
    if (mixed) this.logger.warn({ event: 'pool.versions.mixed', pool, versions, excluded }, `pool ${pool} runs mixed app versions`);
    else this.logger.info({ event: 'pool.versions.same', pool, versions }, `pool ${pool} runs one app version again`);
  }

  static #storeFor(config: LbConfig, role: string, logger: Logger): StateStore {
    if (role === 'worker') return new MemoryStateStore();
    if (config.state.store === 'redis') return new RedisStateStore({ url: config.state.redis.url, prefix: config.state.redis.prefix, logger });
    return new FileStateStore(resolve(config.baseDir, config.state.file));
  }

  /** A session touch seen elsewhere (a cluster worker): shared with the fleet when there is one. */
  recordTouch(pool: string, id: string, backend: string, expiresAt: number): void {
    if (this.store instanceof RedisStateStore) this.store.touch(pool, id, backend, expiresAt);
  }

  /**
   * Several lb instances on one Redis (SPEC §8): apply every newer state document another
   * instance stored, exchange session touches and fleet-wide live counts every 500 ms, and when
   * a backend starts draining, learn the sessions (and hash keys) the fleet has on it, so they
   * keep it on this instance too.
   */
  #joinFleet(store: RedisStateStore): void {
    store.subscribe((doc) => {
      if (doc.version <= this.state.version) return;
      this.adoptState(doc);
      this.state = doc;
      this.logger.info({ event: 'state.fleet.applied', version: doc.version }, `state version ${doc.version} from the fleet applied`);
    }, (remote) => {
      if (remote && remote.version >= this.state.version) return;
      store.save(this.state).then(
        () => this.logger.info({ event: 'state.fleet.reseeded', version: this.state.version }, 'shared state restored from this instance'),
        () => undefined,
      );
    });
    const fleet = new Map<string, number>();
    this.balancer.fleetSessions = fleet;
    // Other instances' in-flight requests and open WebSockets per backend (a drain is done only
    // when the whole fleet has nothing left on it).
    const remote = new Map<string, { inFlight: number; websockets: number }>();
    let exchangedAt = 0;
    this.drains.remote = (b) => remote.get(b.id) ?? { inFlight: 0, websockets: 0 };
    // A zero is trusted only from an exchange made after the backend's last admin change.
    this.drains.trusts = (b) => exchangedAt > (b.drainStartedAt ?? 0) + 1000;
    const tick = async (): Promise<void> => {
      const started = this.#now();
      // Sessions held by open WebSockets here stay alive in the fleet's tables too.
      for (const p of this.registry.pools()) {
        const aff = this.balancer.pool(p.name)?.affinity;
        const idle = p.config.affinity.mode === 'hash' ? (p.config.affinity.hash?.maxIdle ?? 0) : p.config.affinity.cookie.maxIdle;
        for (const [id, backend] of aff?.held?.() ?? []) store.touch(p.name, id, backend, started + idle);
      }
      // A backend that holds no sessions any more (maint, drained, draining past its deadline:
      // they are re-pinned) has its fleet-wide set emptied at every exchange, so a touch another
      // instance made before it knew does not keep it counted (and a DELETE refused) for maxIdle.
      const counts = await store.exchange(this.registry.all().map((b) => ({ pool: b.pool, id: b.id, inFlight: b.inFlight, websockets: b.websockets, clear: sessionsEnded(b, started) })), started);
      if (!counts) return;
      fleet.clear();
      remote.clear();
      for (const [id, c] of counts) {
        fleet.set(id, c.sessions);
        remote.set(id, { inFlight: c.inFlight, websockets: c.websockets });
      }
      exchangedAt = started;
    };
    const timer = setInterval(() => void tick(), 500);
    timer.unref();
    this.#undo.push(() => clearInterval(timer));
    const learn = (b: Backend): void =>
      void store.members(b.pool, b.id, this.#now()).then((members) => {
        const affinity = this.balancer.pool(b.pool)?.affinity;
        for (const [id, expiresAt] of members) affinity?.remember?.(id, b.id, expiresAt);
      });
    this.registry.on('change', (e) => {
      if (e.type === 'admin' && e.to === 'draining') learn(e.backend);
      if (e.type === 'removed') store.forget(e.backend.pool, e.backend.id);
    });
    // Backends already draining when this instance (re)started: the constructor applied the
    // stored state before this listener existed.
    for (const b of this.registry.all()) if (b.adminState === 'draining') learn(b);
  }

  /**
   * Make the running backends match a state document (from the fleet, or imported): what it
   * removed goes, what it added comes, what it no longer overrides returns to the YAML config.
   */
  adoptState(doc: PersistedState): void {
    const inConfig = this.#configIds();
    const added = new Set(doc.backends.filter((b) => b.added).map((b) => b.id));
    for (const b of this.registry.all()) if (!inConfig.has(b.id) && !added.has(b.id)) this.registry.remove(b.id);
    const overridden = new Set(doc.backends.map((b) => b.id));
    for (const pool of Object.values(this.config.pools)) {
      for (const b of pool.backends) {
        if (doc.removed.includes(b.id)) continue;
        if (!this.registry.get(b.id)) this.registry.add({ id: b.id, pool: pool.name, url: b.url, weight: b.weight });
        else if (!overridden.has(b.id)) {
          this.registry.setWeight(b.id, b.weight);
          this.registry.setAdminState(b.id, 'active');
        }
      }
    }
    this.#applyOverlay(doc);
  }

  /** Apply a new config live (SIGHUP / admin reload). Invalid configs never reach here. */
  reload(next: LbConfig): string[] {
    // What can still fail is checked before anything changes: a reload applied in part leaves a
    // cluster's workers (which get the config only when the primary's reload succeeds) diverged.
    for (const p of Object.values(next.pools)) {
      if (!p.tlsCa) continue;
      try {
        readFileSync(resolve(next.baseDir, p.tlsCa));
      } catch (err) {
        throw new ApiError('LB_CONFIG_INVALID', `pools.${p.name}.tlsCa: cannot read ${p.tlsCa}: ${(err as Error).message}`);
      }
    }
    const warnings = applyConfigDiff(this, next);
    this.config = next;
    this.#router = new Router(next.routes);
    this.health.sync();
    for (const w of warnings) this.logger.warn({ event: 'config.reload.warning' }, w);
    this.reloadTls();
    this.logger.info({ event: 'config.reloaded' }, 'configuration reloaded');
    return warnings;
  }

  /** Write the admin overlay (every backend's admin state, weight, additions, removals) atomically. */
  persistBackends(): Promise<void> {
    const inConfig = this.#configIds();
    const configured = new Map(Object.values(this.config.pools).flatMap((p) => p.backends.map((b) => [b.id, b])));
    // Only what differs from the YAML is state; the rest keeps following the config.
    const differs = (b: Backend): boolean => {
      const c = configured.get(b.id);
      return !c || c.weight !== b.weight || b.adminState !== 'active' || new URL(c.url).origin !== b.url.origin;
    };
    return this.persist((s) => {
      s.backends = this.registry.all().filter(differs).map((b) => ({
        id: b.id,
        pool: b.pool,
        url: b.url.origin,
        weight: b.weight,
        adminState: b.adminState,
        ...(b.drainDeadline !== undefined ? { drainDeadline: b.drainDeadline } : {}),
        ...(inConfig.has(b.id) ? {} : { added: true }),
      }));
      s.removed = [...inConfig].filter((id) => !this.registry.get(id));
    });
  }

  /** Replace the admin overlay with an imported document (PUT /api/v1/state). */
  async importState(doc: PersistedState): Promise<void> {
    this.adoptState(doc);
    await this.persist((s) => {
      s.backends = doc.backends;
      s.removed = doc.removed;
      if (doc.cookieSecret && !s.cookieSecret) s.cookieSecret = doc.cookieSecret;
    });
  }

  /** One health probe of a would-be backend (admin `add --check`). */
  async probe(origin: string, pool: string): Promise<void> {
    const hc = this.config.pools[pool].healthCheck;
    try {
      const res = await request(origin + hc.path, { method: 'GET', headersTimeout: hc.timeout, bodyTimeout: hc.timeout, signal: AbortSignal.timeout(hc.timeout) });
      await res.body.dump();
      if (res.statusCode < hc.expectStatus.min || res.statusCode > hc.expectStatus.max) {
        throw new ApiError('LB_BACKEND_UNHEALTHY', `health probe of ${origin}${hc.path} answered ${res.statusCode}`);
      }
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw new ApiError('LB_BACKEND_UNHEALTHY', `health probe of ${origin}${hc.path} failed: ${(err as Error).message}`);
    }
  }

  #configIds(): Set<string> {
    return new Set(Object.values(this.config.pools).flatMap((p) => p.backends.map((b) => b.id)));
  }

  /** Admin changes are state on top of the YAML config: apply them over the config's backends. */
  #applyOverlay(state: PersistedState): void {
    for (const id of state.removed) this.registry.remove(id);
    for (const b of state.backends) {
      if (!this.config.pools[b.pool]) {
        this.logger.warn({ event: 'state.skipped', backend: b.id, pool: b.pool }, `state: pool "${b.pool}" no longer exists; backend ${b.id} skipped`);
        continue;
      }
      const running = this.registry.get(b.id);
      if (!running) {
        if (!b.added) continue;
        this.registry.add({ id: b.id, pool: b.pool, url: b.url, weight: b.weight, rampFrom: 0 });
      } else if (running.url.origin !== new URL(b.url).origin || running.pool !== b.pool) {
        // Removed and added again with another URL (or pool): the stored one wins.
        this.registry.remove(b.id);
        this.registry.add({ id: b.id, pool: b.pool, url: b.url, weight: b.weight });
      } else this.registry.setWeight(b.id, b.weight);
      this.registry.setAdminState(b.id, b.adminState, { deadline: b.drainDeadline });
    }
  }

  /** Re-read the shared certificate; a bad file keeps the current one. */
  reloadTls(): void {
    const https = this.listeners.filter((l) => l.config.tls);
    for (const l of https) {
      try {
        l.setSecureContext(loadTlsOptions(l.config.tls!, this.config.baseDir));
      } catch (err) {
        this.logger.error({ event: 'tls.reload.failed', err: (err as Error).message }, 'certificate reload failed; keeping the current one');
        return;
      }
    }
    if (https.length) this.logger.info({ event: 'tls.reloaded' }, 'certificate reloaded');
  }

  /** Graceful stop: stop accepting, let in-flight requests finish within the grace period. */
  stop(grace = this.config.timeouts.gracePeriod): Promise<void> {
    this.#stopping ??= (async () => {
      this.logger.info({ event: 'lb.stopping', grace }, 'stopping');
      for (const undo of this.#undo.splice(0)) undo();
      // WebSockets get 1001 Going Away, spread at closeRate but finished within the grace period.
      const rate = Math.max(this.config.websocket.closeRate, this.websockets.size / Math.max(0.001, (grace * 0.5) / 1000));
      const closing = this.websockets.closeWhere(() => true, CLOSE_GOING_AWAY, rate);
      const admin = this.admin;
      await Promise.all([
        ...this.listeners.map((l) => l.close(grace)),
        admin ? new Promise<void>((r) => { admin.close(() => r()); admin.closeAllConnections(); }) : undefined,
        closing,
      ]);
      await this.registry.close();
      await this.store.close();
      this.logger.info({ event: 'lb.stopped' }, 'stopped');
    })();
    return this.#stopping;
  }

  /** Persist the current state document (atomic). */
  async persist(mutate: (s: PersistedState) => void): Promise<void> {
    const next = structuredClone(this.state);
    mutate(next);
    next.version++;
    next.updatedAt = new Date(this.#now()).toISOString();
    try {
      await this.store.save(next);
    } catch (err) {
      // Refused or failed: nothing half-applied. The registry goes back to the stored state
      // (which a conflict has just brought up to date).
      this.adoptState(this.state);
      throw err;
    }
    this.state = next;
    await this.afterPersist?.();
  }

  async #ensureCookieSecret(): Promise<void> {
    const needs = Object.values(this.config.pools).some((p) => p.affinity.mode === 'cookie' && p.affinity.cookie.secrets.length === 0);
    if (!needs || this.state.cookieSecret) return;
    try {
      await this.persist((s) => {
        s.cookieSecret = randomBytes(32).toString('base64url');
      });
    } catch (err) {
      // Another instance starting at the same moment stored its secret first: use that one.
      if (!(err instanceof ApiError && err.code === 'LB_CONFLICT') || !this.state.cookieSecret) throw err;
    }
    // Affinities were built before the secret existed: rebuild those that use it.
    for (const pool of Object.values(this.config.pools)) if (pool.affinity.mode === 'cookie') this.balancer.setPool(pool);
  }

  #affinity(pool: PoolConfig): Affinity {
    switch (pool.affinity.mode) {
      case 'cookie': {
        const configured = pool.affinity.cookie.secrets;
        const secrets = configured.length ? configured : [this.state?.cookieSecret ?? randomBytes(32).toString('base64url')];
        return new CookieAffinity({ config: pool.affinity.cookie, secrets, now: this.#now, onTouch: this.#touchSink(pool.name) });
      }
      case 'hash':
        return new HashAffinity({ config: pool.affinity.hash!, now: this.#now, onTouch: this.#touchSink(pool.name) });
      case 'none':
        return new NoAffinity();
    }
  }

  #touchSink(pool: string): TouchSink | undefined {
    const sink = this.#onTouch;
    return sink ? (id, backendId, expiresAt) => sink(pool, id, backendId, expiresAt) : undefined;
  }

  #backendTls(pool: PoolConfig): { rejectUnauthorized: boolean; ca?: Buffer } {
    return {
      rejectUnauthorized: !pool.tlsInsecure,
      ...(pool.tlsCa ? { ca: readFileSync(resolve(this.config.baseDir, pool.tlsCa)) } : {}),
    };
  }

  #upstream(url: URL, pool: PoolConfig): UpstreamPool {
    return new UpstreamPool(url, { ...UPSTREAM_DEFAULTS, connectTimeout: this.config.timeouts.connect, tls: this.#backendTls(pool) });
  }

  #dispatcher(url: URL, pool: PoolConfig): Dispatcher {
    const t = this.config.timeouts;
    return new Pool(url.origin, {
      connections: 256,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: t.backendResponse,
      bodyTimeout: t.backendResponse,
      connect: { timeout: t.connect, ...this.#backendTls(pool) },
    });
  }

  async #listen(): Promise<void> {
    const trust = trustList(this.config.trustedProxies);
    // The level is fixed for the process: decide once, not per request, whether access lines are written.
    const logAccess = this.logger.isLevelEnabled('info');
    const access = accessLogger(this.logger);
    const onAccess = (rec: AccessRecord): void => {
      this.metrics.observe(rec, rec.backend === undefined ? undefined : this.registry.get(rec.backend));
      if (logAccess) access.info({ access: true, ...rec });
    };
    for (const cfg of this.config.listeners) {
      const deps = {
        balancer: this.balancer,
        route: (facts: RouteFacts) => this.#router.poolFor(facts, cfg),
        trust,
        timeouts: this.config.timeouts,
        retries: this.config.retries,
        forwarded: this.config.forwarded,
        now: this.#now,
        onAccess,
        onAttempt: (b: Backend, outcome: ForwardOutcome) => this.passive.observe(b, outcome),
      };
      const handler = createHttpHandler(cfg, deps);
      const listener = await openListener(cfg, {
        timeouts: this.config.timeouts,
        tls: cfg.tls ? this.#tls(cfg.tls) : undefined,
        onRequest: handler,
        onUpgrade: createUpgradeHandler(cfg, { ...deps, registry: this.websockets, backendTls: (p) => this.#backendTls(p.config) }),
      });
      this.listeners.push(listener);
      this.logger.info({ event: 'listener.open', listener: cfg.name, protocol: cfg.protocol, port: listener.port() }, `listening on ${cfg.host}:${listener.port()}`);
    }
  }

  async #openAdmin(loadConfig: () => LbConfig): Promise<void> {
    const a = this.config.admin;
    this.control = new Control(this, loadConfig);
    this.admin = await openAdminServer({
      control: this.control,
      insight: new Insight(this),
      host: a.host,
      port: a.port,
      token: a.token || process.env.LB_ADMIN_TOKEN || undefined,
      ready: () => !this.#stopping && (this.readyExtra?.() ?? true),
      extra: [
        metricsMount({ text: () => (this.metricsText ? this.metricsText() : this.metrics.text()), contentType: this.metrics.contentType }),
        streamMount({ control: this.control, tallies: (b) => (this.tallies ? this.tallies(b) : this.metrics.tallies(b)), registry: this.registry }),
        dashboardMount(),
      ],
      onChange: (what, detail) => this.logger.info({ event: `admin.${what}`, ...detail }, `admin ${what}`),
    });
    const port = (this.admin.address() as AddressInfo).port;
    this.logger.info({ event: 'admin.open', port }, `admin API on http://${a.host}:${port}`);
  }

  adminPort(): number {
    return (this.admin?.address() as AddressInfo).port;
  }

  #tls(cfg: TlsConfig): SecureContextOptions {
    const opts = loadTlsOptions(cfg, this.config.baseDir);
    if (cfg.watch) this.#undo.push(watchTls(tlsFiles(cfg, this.config.baseDir), () => this.reloadTls()));
    return opts;
  }
}
