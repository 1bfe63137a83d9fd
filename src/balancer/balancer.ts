import type { PoolConfig } from '../config/types.js';
import type { Affinity, Decision, RequestFacts } from '../affinity/types.js';
import type { Policy, PolicyDeps } from './policy.js';
import { POLICIES } from './policies.js';
import { select } from './select.js';
import type { PoolView, Registry } from './registry.js';
import type { Backend } from './types.js';

export interface PoolRuntime {
  readonly name: string;
  readonly config: PoolConfig;
  readonly affinity: Affinity;
  readonly policy: Policy;
}

export interface BalancerDeps extends PolicyDeps {
  registry: Registry;
  makeAffinity: (pool: PoolConfig) => Affinity;
  now: () => number;
}

/**
 * Per-pool routing: the pool's affinity and policy over the registry's current view. Holds no
 * backend state of its own (the registry is the one writer).
 */
export class Balancer {
  readonly registry: Registry;
  readonly #deps: BalancerDeps;
  readonly #pools = new Map<string, PoolRuntime>();

  constructor(deps: BalancerDeps) {
    this.#deps = deps;
    this.registry = deps.registry;
    for (const view of deps.registry.pools()) this.setPool(view.config);
  }

  /** (Re)create a pool's affinity and policy, e.g. after a config reload changed them. */
  setPool(config: PoolConfig): void {
    this.#pools.set(config.name, {
      name: config.name,
      config,
      affinity: this.#deps.makeAffinity(config),
      policy: POLICIES[config.balance](this.#deps),
    });
  }

  pool(name: string): PoolRuntime | undefined {
    return this.#pools.get(name);
  }

  pools(): PoolRuntime[] {
    return [...this.#pools.values()];
  }

  /** Slow start (SPEC §5): a backend that became healthy ramps from 10% of its weight. */
  weightOf = (b: Backend): number => {
    const ramp = this.#pools.get(b.pool)?.config.slowStart ?? 0;
    if (ramp <= 0) return b.weight;
    const elapsed = this.#deps.now() - b.healthySince;
    if (elapsed >= ramp) return b.weight;
    return b.weight * Math.max(0.1, elapsed / ramp);
  };

  decide(pool: PoolRuntime, facts: RequestFacts): Decision | undefined {
    const view = this.registry.view(pool.name) as PoolView;
    const lookup = pool.affinity.lookup(facts, view);
    return select(view, lookup, { affinity: pool.affinity, policy: pool.policy, weightOf: this.weightOf, now: this.#deps.now });
  }

  /** Another backend for a retry, never one already tried; undefined if none is left. */
  retryTarget(pool: PoolRuntime, tried: ReadonlySet<Backend>): Backend | undefined {
    const view = this.registry.view(pool.name) as PoolView;
    const candidates = view.eligible.filter((b) => !tried.has(b));
    return candidates.length ? pool.policy.pick(candidates, this.weightOf) : undefined;
  }

  /** Live sessions of a backend: affinity's session table. */
  /** With a shared store: live sessions per backend across every lb instance. */
  fleetSessions?: Map<string, number>;

  liveSessions(b: Backend): number {
    const local = this.#pools.get(b.pool)?.affinity.liveSessions(b.id) ?? 0;
    const fleet = this.fleetSessions?.get(b.id);
    return fleet === undefined ? local : Math.max(local, fleet);
  }

  /** Expired sessions out of every pool's affinity: `part` of each table per call (see Affinity.sweep). */
  sweep(part = 1): void {
    for (const p of this.#pools.values()) p.affinity.sweep(part);
  }
}
