import type { Backend } from './types.js';
import type { Policy } from './policy.js';

/**
 * Smooth weighted round-robin (nginx's algorithm): every pick adds each candidate's weight
 * to its running score, takes the highest, and subtracts the total from the winner. Spreads a
 * 5:1:1 split as a,a,b,a,c,a,a rather than a,a,a,a,a,b,c.
 */
export class RoundRobin implements Policy {
  readonly #current = new Map<string, number>();

  pick(candidates: readonly Backend[], weightOf: (b: Backend) => number): Backend {
    let total = 0;
    let best: Backend = candidates[0];
    let bestScore = -Infinity;
    for (const b of candidates) {
      const w = weightOf(b);
      total += w;
      const score = (this.#current.get(b.id) ?? 0) + w;
      this.#current.set(b.id, score);
      if (score > bestScore) {
        bestScore = score;
        best = b;
      }
    }
    this.#current.set(best.id, bestScore - total);
    if (this.#current.size > candidates.length * 2) this.#forgetAbsent(candidates);
    return best;
  }

  #forgetAbsent(candidates: readonly Backend[]): void {
    const keep = new Set(candidates.map((b) => b.id));
    for (const id of this.#current.keys()) if (!keep.has(id)) this.#current.delete(id);
  }
}
