import type { Backend } from './types.js';
import { loadOf, type Policy, type PolicyDeps } from './policy.js';

/**
 * Weighted least-connections: the lowest (load + 1) / weight wins, where load counts in-flight
 * requests and open WebSockets. Ties are broken at random so an idle pool still spreads.
 */
export class LeastConnections implements Policy {
  readonly #random: () => number;
  constructor(deps: PolicyDeps) {
    this.#random = deps.random;
  }

  pick(candidates: readonly Backend[], weightOf: (b: Backend) => number): Backend {
    let best: Backend = candidates[0];
    let bestScore = Infinity;
    let ties = 0;
    for (const b of candidates) {
      const score = (loadOf(b) + 1) / weightOf(b);
      if (score < bestScore) {
        bestScore = score;
        best = b;
        ties = 1;
      } else if (score === bestScore) {
        // Reservoir sampling over the tied candidates: each wins with probability 1/ties.
        ties++;
        if (this.#random() * ties < 1) best = b;
      }
    }
    return best;
  }
}
