import type { App } from '../app.js';
import { parseDuration } from '../config/duration.js';
import type { LbConfig } from '../config/types.js';
import type { Backend } from '../balancer/types.js';
import { health } from '../balancer/types.js';
import { validateState } from '../state/file-store.js';
import type { PersistedState } from '../state/types.js';
import { ApiError } from './errors.js';
import type { AddBackendRequest, BackendInfo, BackendStatus, PoolInfo } from './wire.js';

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The admin operations, as thin as possible over the registry: validate, change, persist
 * atomically, answer. The API and the CLI speak its wire types.
 */
export class Control {
  readonly #app: App;
  readonly #loadConfig: () => LbConfig;

  constructor(app: App, loadConfig: () => LbConfig) {
    this.#app = app;
    this.#loadConfig = loadConfig;
  }

  list(): BackendInfo[] {
    return this.#app.registry.all().sort(byPoolThenId).map((b) => this.info(b));
  }

  get(id: string): BackendInfo {
    return this.info(this.#backend(id));
  }

  info(b: Backend): BackendInfo {
    const progress = this.#app.drains.progress(b);
    const now = this.#app.now();
    return {
      id: b.id,
      pool: b.pool,
      url: b.url.href.replace(/\/$/, ''),
      weight: b.weight,
      effectiveWeight: Math.round(this.#app.balancer.weightOf(b) * 100) / 100,
      adminState: b.adminState,
      health: health(b),
      status: statusOf(b, this.#app.balancer.weightOf(b)),
      inFlight: b.inFlight,
      websockets: b.websockets,
      sessions: progress.sessions,
      version: b.version ?? null,
      drain:
        b.adminState === 'draining' && b.drainStartedAt !== undefined
          ? {
              startedAt: new Date(b.drainStartedAt).toISOString(),
              deadline: b.drainDeadline !== undefined ? new Date(b.drainDeadline).toISOString() : null,
              remaining: progress.remaining,
              etaSeconds: progress.etaMs === undefined ? null : Math.ceil(progress.etaMs / 1000),
              elapsedSeconds: Math.floor((now - b.drainStartedAt) / 1000),
            }
          : null,
      drainedBy: b.adminState === 'drained' ? (b.drainedBy ?? null) : null,
    };
  }

  pools(): PoolInfo[] {
    return this.#app.registry.pools().map((v) => {
      const versions: Record<string, number> = {};
      for (const b of v.all) if (b.version) versions[b.version] = (versions[b.version] ?? 0) + 1;
      return {
        name: v.name,
        affinity: v.config.affinity.mode,
        balance: v.config.balance,
        backends: v.all.map((b) => b.id),
        eligible: v.eligible.map((b) => b.id),
        versions,
      };
    });
  }

  async add(body: unknown): Promise<BackendInfo> {
    this.#writable();
    const req = object(body) as Partial<AddBackendRequest>;
    if (typeof req.id !== 'string' || !ID.test(req.id)) throw new ApiError('LB_BAD_REQUEST', 'id: expected 1-64 characters of letters, digits, . _ -');
    if (this.#app.registry.get(req.id)) throw new ApiError('LB_CONFLICT', `backend "${req.id}" already exists`);
    const url = backendUrl(req.url);
    const pool = req.pool ?? this.defaultPool();
    if (typeof pool !== 'string' || !this.#app.registry.view(pool)) throw new ApiError('LB_BAD_REQUEST', `pool: no pool named ${JSON.stringify(pool)}`);
    const weight = req.weight === undefined ? 1 : weightOf(req.weight);
    if (req.check) await this.#app.probe(url, pool);
    const b = this.#app.registry.add({ id: req.id, pool, url, weight });
    await this.#app.persistBackends();
    return this.info(b);
  }

  async setWeight(id: string, body: unknown): Promise<BackendInfo> {
    this.#writable();
    const b = this.#backend(id);
    const req = object(body);
    this.#app.registry.setWeight(id, weightOf(req.weight));
    await this.#app.persistBackends();
    return this.info(b);
  }

  async drain(id: string, body: unknown): Promise<BackendInfo> {
    this.#writable();
    const b = this.#backend(id);
    const req = body === undefined ? {} : object(body);
    const pool = this.#app.balancer.pool(b.pool)!;
    const span = req.deadline === undefined ? pool.config.drainDeadline : durationOf(req.deadline);
    if (b.adminState !== 'draining' || req.deadline !== undefined) {
      this.#app.registry.setAdminState(id, 'draining', { deadline: this.#app.now() + span });
    }
    await this.#app.persistBackends();
    this.#app.drains.tick();
    return this.info(b);
  }

  async enable(id: string): Promise<BackendInfo> {
    this.#writable();
    const b = this.#backend(id);
    this.#app.registry.setAdminState(id, 'active');
    await this.#app.persistBackends();
    return this.info(b);
  }

  async maint(id: string): Promise<BackendInfo> {
    this.#writable();
    const b = this.#backend(id);
    this.#app.registry.setAdminState(id, 'maint');
    this.#app.balancer.pool(b.pool)?.affinity.forgetBackend(id);
    await this.#app.persistBackends();
    return this.info(b);
  }

  async remove(id: string, force: boolean): Promise<void> {
    this.#writable();
    this.#backend(id); // 404 at once for an unknown id, before waiting on the workers
    // Cluster: decide on the workers' counts as of now, not their last periodic report.
    if (!force) await this.#app.freshReports?.();
    const b = this.#backend(id); // again: it may have changed (or gone) while we waited
    const p = this.#app.drains.progress(b);
    if (p.remaining > 0 && !force) {
      throw new ApiError('LB_BACKEND_BUSY', `backend "${id}" still has ${p.sessions} sessions, ${p.websockets} WebSockets and ${p.inFlight} requests in flight; drain it first or use ?force=true`);
    }
    this.#app.registry.remove(id);
    this.#app.balancer.pool(b.pool)?.affinity.forgetBackend(id);
    await this.#app.persistBackends();
  }

  /** Apply the config file again; answers once every cluster worker applied it too. */
  async reload(): Promise<{ reloaded: true; warnings: string[] }> {
    let next: LbConfig;
    try {
      next = this.#loadConfig();
    } catch (err) {
      throw new ApiError('LB_CONFIG_INVALID', (err as Error).message);
    }
    const warnings = this.#app.reload(next);
    await this.#app.afterPersist?.();
    return { reloaded: true, warnings };
  }

  exportState(): PersistedState {
    return this.#app.state;
  }

  async importState(body: unknown): Promise<PersistedState> {
    this.#writable();
    let doc: PersistedState;
    try {
      doc = validateState(body, 'import');
    } catch (err) {
      throw new ApiError('LB_STATE_INVALID', (err as Error).message);
    }
    for (const b of doc.backends) {
      backendUrl(b.url);
      if (!this.#app.registry.view(b.pool)) throw new ApiError('LB_STATE_INVALID', `state import: backend ${b.id}: no pool named "${b.pool}"`);
    }
    await this.#app.importState(doc);
    return this.#app.state;
  }

  defaultPool(): string {
    return this.#app.config.listeners.find((l) => l.pool)?.pool ?? Object.keys(this.#app.config.pools)[0];
  }

  /** Refuse an admin change up front when the state store cannot take it (nothing half-applied). */
  #writable(): void {
    const store = this.#app.store;
    if (store.writable && !store.writable()) throw new ApiError('LB_UNAVAILABLE', 'the shared state store is unreachable: admin changes are refused until it is back (lb keeps serving)');
  }

  #backend(id: string): Backend {
    const b = this.#app.registry.get(id);
    if (!b) throw new ApiError('LB_NOT_FOUND', `no backend "${id}"`);
    return b;
  }
}

function byPoolThenId(a: Backend, b: Backend): number {
  return a.pool === b.pool ? (a.id < b.id ? -1 : 1) : a.pool < b.pool ? -1 : 1;
}

export function statusOf(b: Backend, effectiveWeight: number): BackendStatus {
  if (b.adminState === 'maint') return 'maint';
  if (b.adminState === 'drained') return 'drained';
  if (b.adminState === 'draining') return 'draining';
  if (health(b) === 'unhealthy') return 'down';
  return effectiveWeight < b.weight ? 'starting' : 'up';
}

function object(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ApiError('LB_BAD_REQUEST', 'expected a JSON object');
  return body as Record<string, unknown>;
}

function backendUrl(v: unknown): string {
  if (typeof v !== 'string') throw new ApiError('LB_BAD_REQUEST', 'url: expected a string like http://10.0.0.3:8080');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ApiError('LB_BAD_REQUEST', `url: expected a URL like http://10.0.0.3:8080, got ${JSON.stringify(v)}`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || (u.pathname !== '/' && u.pathname !== '') || u.search || u.username) {
    throw new ApiError('LB_BAD_REQUEST', `url: expected http:// or https:// with a host and no path, got ${JSON.stringify(v)}`);
  }
  return u.origin;
}

function weightOf(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1000) {
    throw new ApiError('LB_BAD_REQUEST', `weight: expected an integer from 1 to 1000, got ${JSON.stringify(v)}`);
  }
  return v;
}

function durationOf(v: unknown): number {
  if (typeof v === 'number' && v >= 0) return v * 1000;
  if (typeof v === 'string') {
    try {
      return parseDuration(v);
    } catch {
      /* fall through */
    }
  }
  throw new ApiError('LB_BAD_REQUEST', `deadline: expected a duration like 30m (or seconds), got ${JSON.stringify(v)}`);
}
