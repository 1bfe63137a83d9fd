import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';
import type { Registry } from '../balancer/registry.js';
import type { Balancer } from '../balancer/balancer.js';
import type { DrainMonitor } from '../balancer/drain.js';
import { health, type Backend, type AdminState, type Health } from '../balancer/types.js';
import type { AccessRecord } from '../proxy/http-handler.js';
import type { ProbeResult } from '../health/active.js';
import { statusOf } from '../admin/control.js';
import { HotCounter, HotHistogram, type HotCounterChild, type HotHistogramChild } from './hot.js';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const STATUSES = ['up', 'down', 'starting', 'draining', 'drained', 'maint'] as const;
const HEALTHS: Health[] = ['unknown', 'healthy', 'unhealthy'];
/** 0.5 ms … 10 s. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Per backend: the labelled children, made once, so the hot path allocates no label set. */
interface BackendSeries {
  requests: HotCounterChild[];
  durations: HotHistogramChild[];
  /** Plain tallies for the dashboard's requests/s and error rate. */
  total: number;
  errors: number;
}

/**
 * lb's Prometheus metrics (SPEC §9), `lb_*` plus Node's default process metrics. Request
 * counters are observed from the access record; gauges (status, in-flight, WebSockets, live
 * sessions, drain remaining) are read from the Registry at scrape time, so they cost nothing on
 * the request path.
 */
export class Metrics {
  readonly registry = new PromRegistry();
  readonly #requests: HotCounter;
  readonly #durations: HotHistogram;
  readonly #affinity: HotCounter;
  readonly #retries: HotCounter;
  readonly #checks: Counter<string>;
  readonly #checkDurations: Histogram<string>;
  readonly #series = new Map<Backend | string, BackendSeries>();
  /** pool → result → reason → child (nested maps: no key strings built per request). */
  readonly #affinityChildren = new Map<string, Map<string, Map<string, HotCounterChild>>>();
  readonly #retryChildren = new Map<string, HotCounterChild>();

  constructor(deps: { registry: Registry; balancer: Balancer; drains: DrainMonitor; parts?: { traffic: boolean; state: boolean } }) {
    const parts = deps.parts ?? { traffic: true, state: true };
    const r = this.registry;
    // Request-path families live where traffic is (workers), state gauges where state is (the
    // primary): with workers the two sets are disjoint and the primary's /metrics joins them.
    const traffic = parts.traffic ? [r] : [];
    const state = parts.state ? [r] : [];
    if (parts.traffic) collectDefaultMetrics({ register: r });
    const backends = (): Backend[] => deps.registry.all();
    this.#requests = new HotCounter({ name: 'lb_requests_total', help: 'Requests answered, by pool, backend and status class.', labelNames: ['pool', 'backend', 'status_class'], registers: traffic });
    this.#durations = new HotHistogram({
      name: 'lb_request_duration_seconds',
      help: 'Time from request to the end of the response, by pool, backend and status class.',
      labelNames: ['pool', 'backend', 'status_class'],
      buckets: DURATION_BUCKETS,
      registers: traffic,
    });
    this.#affinity = new HotCounter({
      name: 'lb_affinity_total',
      help: 'Affinity results: hit, new, repin (reason gone|maint|down|deadline), rejected (reason malformed|bad-signature|expired|unknown-key|unknown-backend), fallback (hash key missing).',
      labelNames: ['pool', 'result', 'reason'],
      registers: traffic,
    });
    this.#retries = new HotCounter({ name: 'lb_retries_total', help: 'Requests retried on another backend.', labelNames: ['pool'], registers: traffic });
    this.#checks = new Counter({ name: 'lb_health_checks_total', help: 'Active health probes by result.', labelNames: ['pool', 'backend', 'result'], registers: state });
    this.#checkDurations = new Histogram({ name: 'lb_health_check_duration_seconds', help: 'Active health probe latency.', labelNames: ['pool'], buckets: DURATION_BUCKETS, registers: state });
    gauge(state, 'lb_backend_status', 'Backend status (1 for the current one): up, down, starting, draining, drained, maint.', ['pool', 'backend', 'status'], (set) => {
      for (const b of backends()) {
        const now = statusOf(b, deps.balancer.weightOf(b));
        for (const s of STATUSES) set({ pool: b.pool, backend: b.id, status: s }, s === now ? 1 : 0);
      }
    });
    gauge(state, 'lb_backend_health', 'Backend health from checks (1 for the current one): unknown, healthy, unhealthy.', ['pool', 'backend', 'health'], (set) => {
      for (const b of backends()) {
        const h = health(b);
        for (const s of HEALTHS) set({ pool: b.pool, backend: b.id, health: s }, s === h ? 1 : 0);
      }
    });
    gauge(state, 'lb_backend_admin_state', 'Backend admin state (1 for the current one).', ['pool', 'backend', 'state'], (set) => {
      for (const b of backends()) for (const s of ['active', 'draining', 'drained', 'maint'] as AdminState[]) set({ pool: b.pool, backend: b.id, state: s }, s === b.adminState ? 1 : 0);
    });
    gauge(state, 'lb_backend_weight', 'Weight in effect for new sessions (slow start included).', ['pool', 'backend'], (set) => {
      for (const b of backends()) set({ pool: b.pool, backend: b.id }, deps.balancer.weightOf(b));
    });
    gauge(state, 'lb_backend_inflight', 'Requests in flight to the backend.', ['pool', 'backend'], (set) => {
      for (const b of backends()) set({ pool: b.pool, backend: b.id }, b.inFlight);
    });
    gauge(state, 'lb_websockets_open', 'Open WebSocket tunnels to the backend.', ['pool', 'backend'], (set) => {
      for (const b of backends()) set({ pool: b.pool, backend: b.id }, b.websockets);
    });
    gauge(state, 'lb_sessions_live', 'Live sessions pinned to the backend (seen within maxIdle, or held by a WebSocket).', ['pool', 'backend'], (set) => {
      for (const b of backends()) set({ pool: b.pool, backend: b.id }, deps.balancer.liveSessions(b));
    });
    gauge(state, 'lb_drain_remaining_sessions', 'For draining backends: sessions + WebSockets + in-flight requests left.', ['pool', 'backend'], (set) => {
      for (const b of backends()) if (b.adminState === 'draining') set({ pool: b.pool, backend: b.id }, deps.drains.progress(b).remaining);
    });
    deps.registry.on('change', (e) => {
      if (e.type === 'removed') this.#forget(e.backend);
    });
  }

  /** One finished request (HTTP or WebSocket upgrade). */
  observe(rec: AccessRecord, backend: Backend | undefined): void {
    if (rec.pool === undefined) return;
    if (backend) {
      const s = this.#seriesOf(backend);
      const cls = Math.min(4, Math.max(0, Math.floor(rec.status / 100) - 1));
      s.requests[cls].value++;
      s.durations[cls].observe(rec.ms / 1000);
      s.total++;
      if (rec.status >= 500) s.errors++;
    }
    if (rec.affinity) this.#affinityChild(rec.pool, rec.fallback ? 'fallback' : rec.affinity, rec.reason ?? '').value++;
    if (rec.retries > 0) {
      let c = this.#retryChildren.get(rec.pool);
      if (!c) this.#retryChildren.set(rec.pool, (c = this.#retries.labels(rec.pool)));
      c.value += rec.retries;
    }
  }

  probe(r: ProbeResult): void {
    this.#checks.labels(r.backend.pool, r.backend.id, r.ok ? 'pass' : 'fail').inc();
    this.#checkDurations.labels(r.backend.pool).observe(r.ms / 1000);
  }

  /** Running totals per backend (for requests/s and error rate by difference). */
  tallies(b: Backend): { total: number; errors: number } {
    const s = this.#series.get(b);
    return s ? { total: s.total, errors: s.errors } : { total: 0, errors: 0 };
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #seriesOf(b: Backend): BackendSeries {
    let s = this.#series.get(b);
    if (!s) {
      s = {
        requests: STATUS_CLASSES.map((c) => this.#requests.labels(b.pool, b.id, c)),
        durations: STATUS_CLASSES.map((c) => this.#durations.labels(b.pool, b.id, c)),
        total: 0,
        errors: 0,
      };
      this.#series.set(b, s);
    }
    return s;
  }

  #affinityChild(pool: string, result: string, reason: string): HotCounterChild {
    let byResult = this.#affinityChildren.get(pool);
    if (!byResult) this.#affinityChildren.set(pool, (byResult = new Map()));
    let byReason = byResult.get(result);
    if (!byReason) byResult.set(result, (byReason = new Map()));
    let c = byReason.get(reason);
    if (!c) byReason.set(reason, (c = this.#affinity.labels(pool, result, reason)));
    return c;
  }

  #forget(b: Backend): void {
    this.#series.delete(b);
    for (const c of STATUS_CLASSES) {
      this.#requests.remove(b.pool, b.id, c);
      this.#durations.remove(b.pool, b.id, c);
    }
  }
}

/** A gauge whose values are read at scrape time; stale label sets are dropped each scrape. */
function gauge(r: PromRegistry[], name: string, help: string, labelNames: string[], fill: (set: (labels: Record<string, string>, v: number) => void) => void): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: r,
    collect() {
      this.reset();
      fill((labels, v) => this.set(labels, v));
    },
  });
}
