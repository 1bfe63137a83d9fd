import { EventEmitter } from 'node:events';
import { request, type Dispatcher } from 'undici';
import type { HealthCheckConfig } from '../config/types.js';
import type { Registry } from '../balancer/registry.js';
import type { Backend } from '../balancer/types.js';

/** One probe's result, for logs and metrics. */
export interface ProbeResult {
  backend: Backend;
  ok: boolean;
  ms: number;
  /** Why it failed: `status 503`, `body`, `timeout`, `ECONNREFUSED`… */
  reason?: string;
  version?: string;
}

interface Target {
  backend: Backend;
  /** Consecutive passes / failures, toward rise / fall. */
  passes: number;
  fails: number;
  timer?: NodeJS.Timeout;
  running: boolean;
}

const MAX_BODY = 64 * 1024;

/**
 * Active health checks (SPEC §5): each backend of a pool with `healthCheck` is probed every
 * interval (jittered ±20 %, and the first probe spread over one interval, so a hundred backends
 * are not probed in the same millisecond). `rise` passes in a row make it healthy, `fall`
 * failures in a row unhealthy; the Registry announces a transition once. The app version is read
 * from a header or a JSON field of the same answer.
 *
 * The checker never writes backend state itself except through the Registry (the one writer).
 */
export class ActiveChecker extends EventEmitter<{ probe: [ProbeResult] }> {
  readonly #registry: Registry;
  readonly #config: (pool: string) => HealthCheckConfig | undefined;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #targets = new Map<string, Target>();
  readonly #scheduled: boolean;
  #closed = false;

  /** `scheduled: false` (a cluster worker: the primary checks): only probeNow() probes. */
  constructor(deps: { registry: Registry; config: (pool: string) => HealthCheckConfig | undefined; random?: () => number; now?: () => number; scheduled?: boolean }) {
    super();
    this.#scheduled = deps.scheduled ?? true;
    this.#registry = deps.registry;
    this.#config = deps.config;
    this.#random = deps.random ?? Math.random;
    this.#now = deps.now ?? Date.now;
    deps.registry.on('change', (e) => {
      if (e.type === 'added') this.#track(e.backend, true);
      if (e.type === 'removed') this.#untrack(e.backend.id);
    });
  }

  /** Start probing every backend of every pool with checks enabled (call after config changes too). */
  sync(): void {
    const seen = new Set<string>();
    for (const b of this.#registry.all()) {
      seen.add(b.id);
      this.#track(b, false);
    }
    for (const id of [...this.#targets.keys()]) if (!seen.has(id)) this.#untrack(id);
  }

  /** Probe one backend now, outside the schedule (admin `add --check`, passive recovery). */
  async probeNow(b: Backend): Promise<ProbeResult | undefined> {
    const cfg = this.#config(b.pool);
    if (!cfg?.enabled) return undefined;
    return probe(b, cfg, this.#now);
  }

  /** Is this backend's pool actively checked? */
  checks(b: Backend): boolean {
    return this.#config(b.pool)?.enabled === true;
  }

  close(): void {
    this.#closed = true;
    for (const id of [...this.#targets.keys()]) this.#untrack(id);
  }

  #track(b: Backend, fresh: boolean): void {
    if (!this.#scheduled) return;
    const cfg = this.#config(b.pool);
    if (!cfg?.enabled) {
      this.#untrack(b.id);
      return;
    }
    if (this.#targets.has(b.id)) return;
    const t: Target = { backend: b, passes: 0, fails: 0, running: false };
    this.#targets.set(b.id, t);
    // A backend added live is probed at once; at start, first probes are spread over one interval.
    this.#schedule(t, fresh ? 0 : this.#random() * cfg.interval);
  }

  #untrack(id: string): void {
    const t = this.#targets.get(id);
    if (!t) return;
    clearTimeout(t.timer);
    this.#targets.delete(id);
  }

  #schedule(t: Target, delay: number): void {
    if (this.#closed) return;
    t.timer = setTimeout(() => void this.#run(t), delay);
    t.timer.unref();
  }

  async #run(t: Target): Promise<void> {
    const cfg = this.#config(t.backend.pool);
    if (!cfg?.enabled || this.#targets.get(t.backend.id) !== t) return;
    t.running = true;
    const result = await probe(t.backend, cfg, this.#now);
    t.running = false;
    if (this.#targets.get(t.backend.id) !== t) return; // removed meanwhile
    this.emit('probe', result);
    if (result.version !== undefined) this.#registry.setVersion(t.backend.id, result.version);
    if (result.ok) {
      t.passes++;
      t.fails = 0;
      if (t.passes >= cfg.rise) this.#registry.setActiveHealth(t.backend.id, 'healthy');
    } else {
      t.fails++;
      t.passes = 0;
      if (t.fails >= cfg.fall) this.#registry.setActiveHealth(t.backend.id, 'unhealthy');
    }
    this.#schedule(t, cfg.interval * (0.8 + 0.4 * this.#random()));
  }
}

/** One probe: a real request on the backend's own connection pool, bounded by `timeout`. */
export async function probe(b: Backend, cfg: HealthCheckConfig, now: () => number = Date.now): Promise<ProbeResult> {
  const started = now();
  const done = (ok: boolean, reason?: string, version?: string): ProbeResult => ({ backend: b, ok, ms: now() - started, reason, version });
  const headers: Record<string, string> = { 'user-agent': 'lb-health-check', accept: '*/*' };
  if (cfg.host) headers.host = cfg.host;
  let res: Dispatcher.ResponseData;
  // The timeout bounds connect + headers + body; cleared once done so a finished probe is never aborted.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new DOMException('health check timed out', 'TimeoutError')), cfg.timeout);
  try {
    res = await request(new URL(cfg.path, b.origin), {
      method: cfg.method as Dispatcher.HttpMethod,
      headers,
      dispatcher: b.dispatcher,
      headersTimeout: cfg.timeout,
      bodyTimeout: cfg.timeout,
      signal: abort.signal,
    });
  } catch (err) {
    clearTimeout(timer);
    const e = err as { code?: string; name?: string };
    return done(false, e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' ? 'timeout' : e.code ?? String(err));
  }
  let body = '';
  const wantBody = cfg.expectBody !== undefined || cfg.version?.startsWith('json:');
  try {
    if (wantBody) {
      for await (const chunk of res.body) {
        body += chunk;
        if (body.length > MAX_BODY) break;
      }
    }
  } catch {
    return done(false, 'body');
  } finally {
    clearTimeout(timer);
    // Destroying an unread body makes undici emit RequestAbortedError on it: expected, swallowed.
    res.body.on('error', () => undefined);
    if (wantBody) res.body.destroy();
    else await res.body.dump({ limit: MAX_BODY }).catch(() => undefined);
  }
  const version = readVersion(cfg.version, res.headers, body);
  if (res.statusCode < cfg.expectStatus.min || res.statusCode > cfg.expectStatus.max) return done(false, `status ${res.statusCode}`, version);
  if (cfg.expectBody !== undefined && !body.includes(cfg.expectBody)) return done(false, 'body', version);
  return done(true, undefined, version);
}

/** `header:NAME` or `json:field.path` → the version string, or undefined when absent. */
export function readVersion(source: string | undefined, headers: Record<string, string | string[] | undefined>, body: string): string | undefined {
  if (!source) return undefined;
  if (source.startsWith('header:')) {
    const v = headers[source.slice(7).toLowerCase()];
    return v === undefined ? undefined : String(Array.isArray(v) ? v[0] : v).trim() || undefined;
  }
  try {
    let v: unknown = JSON.parse(body);
    for (const k of source.slice(5).split('.')) v = (v as Record<string, unknown> | undefined)?.[k];
    return v === undefined || v === null || typeof v === 'object' ? undefined : String(v);
  } catch {
    return undefined;
  }
}
