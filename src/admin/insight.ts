import { HashAffinity } from '../affinity/hash.js';
import { request } from 'undici';
import type { App } from '../app.js';
import { CookieAffinity } from '../affinity/cookie.js';
import { pinnedReason } from '../balancer/select.js';
import { acceptsNew, health, type Backend } from '../balancer/types.js';
import { ApiError } from './errors.js';
import type { BroadcastResult, ExplainResult, PlanResult } from './wire.js';

/**
 * Read-only questions operators ask before and while they act: what a drain or an add would
 * move (plan), why a request goes where it goes (explain), and one request to every backend
 * (broadcast). Nothing here changes routing state.
 */
export class Insight {
  constructor(readonly app: App) {}

  plan(q: URLSearchParams): PlanResult {
    const action = q.get('action');
    const id = q.get('id') ?? '';
    if (action === 'drain') return this.#planDrain(id);
    if (action === 'add') return this.#planAdd(id, q);
    throw new ApiError('LB_BAD_REQUEST', 'action: expected drain or add');
  }

  #sessions(pool: string): number {
    const view = this.app.registry.view(pool)!;
    return view.all.reduce((n, b) => n + this.app.balancer.liveSessions(b), 0);
  }

  #share(pool: string, extra?: { id: string; weight: number }, without?: string): Map<string, number> {
    const view = this.app.registry.view(pool)!;
    const w = new Map<string, number>();
    for (const b of view.eligible) if (b.id !== without) w.set(b.id, this.app.balancer.weightOf(b));
    if (extra) w.set(extra.id, extra.weight);
    const total = [...w.values()].reduce((a, b) => a + b, 0);
    return new Map([...w].map(([k, v]) => [k, total ? v / total : 0]));
  }

  #planDrain(id: string): PlanResult {
    const b = this.app.registry.get(id);
    if (!b) throw new ApiError('LB_NOT_FOUND', `no backend "${id}"`);
    const live = this.app.balancer.liveSessions(b);
    const notes = [
      `${live} live sessions stay on ${id} until they idle out; only those still live at the drain deadline are re-pinned`,
    ];
    if (!acceptsNew(b)) notes.push(`${id} already takes no new sessions (${b.adminState}, ${health(b)})`);
    const others = this.#share(b.pool, undefined, id);
    if (others.size === 0) notes.push(`no other backend of pool ${b.pool} takes new sessions: new users would get 503`);
    return {
      action: 'drain',
      backend: id,
      pool: b.pool,
      sessionsMoving: live,
      sessionsTotal: this.#sessions(b.pool),
      hashKeyShare: this.#hashShare(b.pool, (ids) => ids.filter((x) => x !== id)),
      newSessionShare: this.#share(b.pool).get(id) ?? 0,
      notes,
    };
  }

  #planAdd(id: string, q: URLSearchParams): PlanResult {
    const pool = q.get('pool') ?? this.app.control!.defaultPool();
    if (!this.app.registry.view(pool)) throw new ApiError('LB_BAD_REQUEST', `pool: no pool named "${pool}"`);
    if (this.app.registry.get(id)) throw new ApiError('LB_CONFLICT', `backend "${id}" already exists`);
    const weight = Number(q.get('weight') ?? 1);
    return {
      action: 'add',
      backend: id,
      pool,
      sessionsMoving: 0,
      sessionsTotal: this.#sessions(pool),
      hashKeyShare: this.#hashShare(pool, (ids) => [...ids, id], { id, weight }),
      newSessionShare: this.#share(pool, { id, weight }).get(id) ?? 0,
      notes: ['existing sessions stay where they are; only new sessions are placed on the new backend'],
    };
  }

  /** Hash pools: the share of keys whose owner changes. */
  #hashShare(pool: string, change: (ids: string[]) => string[], extra?: { id: string; weight: number }): number | null {
    const aff = this.app.balancer.pool(pool)?.affinity;
    if (!(aff instanceof HashAffinity)) return null;
    const view = this.app.registry.view(pool)!;
    const weights = new Map(view.all.map((b) => [b.id, b.weight]));
    if (extra) weights.set(extra.id, extra.weight);
    return aff.keyShareMoved(change(view.all.map((b) => b.id)).map((id) => ({ id, weight: weights.get(id) ?? 1 })));
  }

  explain(q: URLSearchParams): ExplainResult {
    const pool = q.get('pool') ?? this.app.control!.defaultPool();
    const runtime = this.app.balancer.pool(pool);
    if (!runtime) throw new ApiError('LB_BAD_REQUEST', `pool: no pool named "${pool}"`);
    const cookie = q.get('cookie');
    const key = q.get('key');
    if (key !== null) {
      if (!(runtime.affinity instanceof HashAffinity)) throw new ApiError('LB_BAD_REQUEST', `pool ${pool} uses ${runtime.config.affinity.mode} affinity, not hash`);
      return runtime.affinity.explain(key, this.app.registry.view(pool)!, pool);
    }
    if (cookie === null) throw new ApiError('LB_BAD_REQUEST', 'expected cookie=VALUE or key=K');
    if (!(runtime.affinity instanceof CookieAffinity)) throw new ApiError('LB_BAD_REQUEST', `pool ${pool} uses ${runtime.config.affinity.mode} affinity, not cookie`);
    return this.#explainCookie(pool, runtime.affinity, cookie);
  }

  #explainCookie(pool: string, aff: CookieAffinity, raw: string): ExplainResult {
    const cfg = this.app.config.pools[pool].affinity.cookie;
    // Accept "name=value" as copied from a browser, or the bare value.
    const value = raw.startsWith(`${cfg.name}=`) ? raw.slice(cfg.name.length + 1) : raw;
    const steps: string[] = [];
    const now = this.app.now();
    const done = (result: string, backend: Backend | null = null): ExplainResult => ({ pool, mode: 'cookie', steps, backend: backend?.id ?? null, result });
    const d = aff.codec.decode(value, now, cfg);
    if (!d.ok) {
      steps.push(
        {
          malformed: 'cookie is malformed (not a 66-character lb cookie)',
          'unknown-key': `signed with a key this lb does not have (key ids known: ${aff.codec.keyIds.join(', ')})`,
          'bad-signature': 'signature does not verify: the cookie was altered or forged',
          expired: `expired (maxIdle ${cfg.maxIdle / 1000}s, maxLife ${cfg.maxLife / 1000}s)`,
          'unknown-backend': '',
        }[d.reason],
      );
      steps.push('treated as no cookie: placed as a new session by the pool balancing policy');
      return done(`rejected: ${d.reason}`);
    }
    const c = d.claims;
    steps.push(`signature valid, key id ${c.keyId}${c.keyId === aff.codec.signingKeyId ? ' (current signing key)' : ' (older key, still accepted)'}`);
    steps.push(`issued ${Math.round((now - c.issuedAt) / 1000)}s ago, last seen ${Math.round((now - c.lastSeen) / 1000)}s ago: not expired`);
    const view = this.app.registry.view(pool)!;
    const target = view.all.find((b) => aff.codec.tokenFor(b.id, c.keyId) === c.token);
    if (!target) {
      steps.push('backend token matches no backend of this pool (removed?)');
      return done('rejected: unknown-backend');
    }
    steps.push(`pinned to ${target.id}: admin ${target.adminState}, health ${health(target)}`);
    const reason = pinnedReason(target, now);
    if (reason) {
      steps.push(`${target.id} cannot serve this session (${reason}): it would be re-pinned with X-LB-Repinned: ${target.id}; reason=${reason}`);
      return done(`repin: ${reason}`, target);
    }
    return done('hit', target);
  }

  async broadcast(body: unknown): Promise<BroadcastResult> {
    const b = (body ?? {}) as { method?: unknown; path?: unknown; pool?: unknown; data?: unknown };
    const method = typeof b.method === 'string' ? b.method.toUpperCase() : '';
    if (!/^[A-Z]{3,10}$/.test(method)) throw new ApiError('LB_BAD_REQUEST', 'method: expected an HTTP method like POST');
    if (typeof b.path !== 'string' || !b.path.startsWith('/')) throw new ApiError('LB_BAD_REQUEST', 'path: expected a path starting with /');
    const pool = typeof b.pool === 'string' ? b.pool : this.app.control!.defaultPool();
    const view = this.app.registry.view(pool);
    if (!view) throw new ApiError('LB_BAD_REQUEST', `pool: no pool named "${pool}"`);
    const data = typeof b.data === 'string' ? b.data : undefined;
    const targets = view.all.filter((x) => x.adminState === 'active' && health(x) !== 'unhealthy');
    const results = await Promise.all(
      targets.map(async (t) => {
        const started = this.app.now();
        try {
          const res = await request(t.origin + b.path, {
            method: method as 'POST',
            body: data,
            headers: data ? { 'content-type': 'application/json', 'x-lb-broadcast': '1' } : { 'x-lb-broadcast': '1' },
            dispatcher: t.dispatcher,
            headersTimeout: 30_000,
            bodyTimeout: 30_000,
          });
          const text = await res.body.text();
          return { backend: t.id, status: res.statusCode, error: null, ms: this.app.now() - started, body: text.slice(0, 200) };
        } catch (err) {
          return { backend: t.id, status: null, error: (err as Error).message, ms: this.app.now() - started, body: '' };
        }
      }),
    );
    return { pool, method, path: b.path, results };
  }
}
