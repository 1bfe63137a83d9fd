import type { PassiveHealthConfig } from '../config/types.js';
import type { Registry } from '../balancer/registry.js';
import type { Backend } from '../balancer/types.js';
import type { ForwardOutcome } from '../proxy/forward.js';

/**
 * Passive health (outlier detection, SPEC §5): `consecutiveErrors` connect errors, resets or
 * (with `count5xx`) 5xx answers in a row from real traffic mark a backend down for `cooldown`.
 * After the cooldown, a backend whose pool has active checks comes back only when a probe passes
 * (else the cooldown starts again); without active checks it is let back on trial.
 *
 * The count is per process and lock-free: one integer per backend, reset by any success.
 */
export class PassiveHealth {
  readonly #registry: Registry;
  readonly #config: (pool: string) => PassiveHealthConfig | undefined;
  readonly #recheck: (b: Backend) => Promise<boolean | undefined>;
  readonly #errors = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #report?: (b: Backend) => void;

  constructor(deps: {
    registry: Registry;
    config: (pool: string) => PassiveHealthConfig | undefined;
    /** Probe once: true/false, or undefined when the pool has no active checks. */
    recheck: (b: Backend) => Promise<boolean | undefined>;
    /** Cluster worker: report instead of ejecting (the primary ejects, and tells every worker). */
    eject?: (b: Backend) => void;
  }) {
    this.#report = deps.eject;
    this.#registry = deps.registry;
    this.#config = deps.config;
    this.#recheck = deps.recheck;
    deps.registry.on('change', (e) => {
      if (e.type === 'removed') this.#forget(e.backend.id);
    });
  }

  /** Called after every forwarding attempt. */
  observe(b: Backend, outcome: ForwardOutcome): void {
    const cfg = this.#config(b.pool);
    if (!cfg?.enabled) return;
    const failed = !outcome.ok
      ? outcome.error.code === 'LB_BACKEND_CONNECT' || outcome.error.code === 'LB_BACKEND_RESET' || (outcome.error.code === 'LB_BACKEND_TIMEOUT' && !outcome.responded)
      : cfg.count5xx && outcome.status >= 500;
    if (!failed) {
      if (this.#errors.has(b.id)) this.#errors.delete(b.id);
      return;
    }
    const n = (this.#errors.get(b.id) ?? 0) + 1;
    this.#errors.set(b.id, n);
    if (n >= cfg.consecutiveErrors && !b.passiveDown) {
      if (this.#report) {
        this.#errors.delete(b.id);
        this.#report(b);
      } else this.#eject(b, cfg.cooldown);
    }
  }

  /** Eject now for the pool's cooldown (a cluster worker asked for it). */
  ejectNow(b: Backend): void {
    const cfg = this.#config(b.pool);
    if (cfg?.enabled && !b.passiveDown) this.#eject(b, cfg.cooldown);
  }

  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }

  #eject(b: Backend, cooldown: number): void {
    this.#registry.setPassiveDown(b.id, true);
    this.#errors.delete(b.id);
    const timer = setTimeout(() => void this.#afterCooldown(b), cooldown);
    timer.unref();
    this.#timers.set(b.id, timer);
  }

  async #afterCooldown(b: Backend): Promise<void> {
    this.#timers.delete(b.id);
    if (this.#registry.get(b.id) !== b) return;
    const passed = await this.#recheck(b);
    if (passed === false) return this.#eject(b, this.#config(b.pool)?.cooldown ?? 30_000);
    this.#registry.setPassiveDown(b.id, false);
  }

  #forget(id: string): void {
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
    this.#errors.delete(id);
  }
}
