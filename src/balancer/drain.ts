import { EventEmitter } from 'node:events';
import type { Balancer } from './balancer.js';
import type { Registry } from './registry.js';
import type { Backend } from './types.js';

export interface DrainProgress {
  sessions: number;
  websockets: number;
  inFlight: number;
  remaining: number;
  /** Estimated ms until drained; undefined when there is nothing to estimate from yet. */
  etaMs?: number;
}

interface Track {
  startedAt: number;
  initial: number;
  deadlineHandled: boolean;
}

/**
 * Watches draining backends: counts what is left on each (live sessions, open WebSockets,
 * in-flight requests), declares a backend `drained` when all reach zero, and at the drain
 * deadline forgets its sessions (they re-pin on their next request) and announces 'deadline'
 * so open WebSockets can be closed gracefully.
 *
 * Session counts live in memory, so a process only trusts a zero once it has watched the backend
 * for a whole maxIdle (sessions issued before it started are invisible to it otherwise).
 */
export class DrainMonitor extends EventEmitter<{ deadline: [Backend]; drained: [Backend] }> {
  readonly #registry: Registry;
  readonly #balancer: Balancer;
  readonly #now: () => number;
  readonly #since: number;
  readonly #tracks = new Map<string, Track>();
  #timer?: NodeJS.Timeout;
  /**
   * Cluster primary: whether a backend's counts (reported by the workers) are at least as fresh
   * as its last change; until then a zero may be a worker's report from before the drain.
   */
  trusts?: (b: Backend) => boolean;
  /** Fleet: the other lb instances' in-flight requests and open WebSockets on a backend. */
  remote?: (b: Backend) => { inFlight: number; websockets: number };

  constructor(deps: { registry: Registry; balancer: Balancer; now: () => number; intervalMs?: number }) {
    super();
    this.#registry = deps.registry;
    this.#balancer = deps.balancer;
    this.#now = deps.now;
    this.#since = deps.now();
    const every = deps.intervalMs ?? 500;
    if (every > 0) {
      this.#timer = setInterval(() => this.tick(), every);
      this.#timer.unref();
    }
  }

  progress(b: Backend): DrainProgress {
    const sessions = this.#balancer.liveSessions(b);
    const other = this.remote?.(b);
    const websockets = b.websockets + (other?.websockets ?? 0);
    const inFlight = b.inFlight + (other?.inFlight ?? 0);
    const remaining = sessions + websockets + inFlight;
    const p: DrainProgress = { sessions, websockets, inFlight, remaining };
    const t = this.#tracks.get(b.id);
    if (t && b.adminState === 'draining') p.etaMs = this.#eta(b, t, remaining);
    return p;
  }

  /** One pass over draining backends; also called by tests and after admin changes. */
  tick(): void {
    const now = this.#now();
    // Progress is counted in live sessions: while something drains, sweep a tenth of the tables
    // every tick besides the housekeeping timer's parts, so the count goes down as users leave
    // (a table of up to 1,024 slots is swept whole, once no resize is under way: until then a
    // part moves entries, and drops the expired ones). A whole sweep per tick of a table at its
    // cap would stall requests for ~25 ms twice a second.
    if (this.#registry.all().some((b) => b.adminState === 'draining')) this.#balancer.sweep(0.1);
    for (const b of this.#registry.all()) {
      if (b.adminState !== 'draining') {
        this.#tracks.delete(b.id);
        continue;
      }
      let t = this.#tracks.get(b.id);
      if (!t) {
        t = { startedAt: b.drainStartedAt ?? now, initial: this.progress(b).remaining, deadlineHandled: false };
        this.#tracks.set(b.id, t);
      }
      if (!t.deadlineHandled && b.drainDeadline !== undefined && now >= b.drainDeadline) {
        t.deadlineHandled = true;
        this.#balancer.pool(b.pool)?.affinity.forgetBackend(b.id);
        this.emit('deadline', b);
      }
      const { remaining } = this.progress(b);
      if (remaining === 0 && (this.trusts?.(b) ?? true) && (t.deadlineHandled || this.#watchedLongEnough(b, now))) {
        b.drainedBy = t.deadlineHandled ? 'deadline' : 'idle';
        this.#registry.setAdminState(b.id, 'drained');
        this.#tracks.delete(b.id);
        this.emit('drained', b);
      }
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #watchedLongEnough(b: Backend, now: number): boolean {
    const maxIdle = this.#balancer.pool(b.pool)?.config.affinity.cookie.maxIdle ?? 0;
    const mode = this.#balancer.pool(b.pool)?.config.affinity.mode;
    if (mode === 'none') return true;
    return now - this.#since >= maxIdle;
  }

  /**
   * Linear estimate from the rate at which the backend has emptied so far, bounded by the
   * deadline. (maxIdle is no bound: an active user keeps a session alive indefinitely.)
   */
  #eta(b: Backend, t: Track, remaining: number): number | undefined {
    const now = this.#now();
    if (remaining === 0) return 0;
    const elapsed = now - t.startedAt;
    const bounds: number[] = [];
    if (b.drainDeadline !== undefined) bounds.push(Math.max(0, b.drainDeadline - now));
    const gone = t.initial - remaining;
    if (gone > 0 && elapsed > 0) bounds.push((remaining * elapsed) / gone);
    return bounds.length ? Math.round(Math.min(...bounds)) : undefined;
  }
}
