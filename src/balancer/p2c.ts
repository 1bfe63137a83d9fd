import type { Backend } from './types.js';
import { loadOf, type Policy, type PolicyDeps } from './policy.js';

/**
 * Power of two choices: sample two candidates (weighted), keep the one with the lower
 * load per unit of weight. Near least-connections quality at O(1) and without herding.
 */
export class PowerOfTwo implements Policy {
  readonly #random: () => number;
  constructor(deps: PolicyDeps) {
    this.#random = deps.random;
  }

  pick(candidates: readonly Backend[], weightOf: (b: Backend) => number): Backend {
    if (candidates.length === 1) return candidates[0];
    const a = this.#sample(candidates, weightOf);
    let b = this.#sample(candidates, weightOf);
    for (let i = 0; b === a && i < 4; i++) b = this.#sample(candidates, weightOf);
    return (loadOf(a) + 1) / weightOf(a) <= (loadOf(b) + 1) / weightOf(b) ? a : b;
  }

  #sample(candidates: readonly Backend[], weightOf: (b: Backend) => number): Backend {
    let total = 0;
    for (const c of candidates) total += weightOf(c);
    let r = this.#random() * total;
    for (const c of candidates) {
      r -= weightOf(c);
      if (r < 0) return c;
    }
    return candidates[candidates.length - 1];
  }
}
