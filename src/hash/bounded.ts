/**
 * Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing
 * with Bounded Loads", 2016; HAProxy `hash-balance-factor`).
 *
 * A key goes to the first member in its preference order (`ConsistentHash.walk`) that is
 * eligible and, when `factor` is set, whose load after taking the key stays within
 *   ceil(factor × (totalLoad + 1) / eligibleCount)
 * where totalLoad sums `load` over eligible members. With factor ≥ 1 some eligible member always
 * qualifies (they cannot all be above the mean); if none does (factor < 1) the first eligible
 * member in the walk is returned. Cost: one pass over the members for the bound, then the walk
 * stops at the first acceptable member (usually the owner).
 */
import type { ConsistentHash } from './ring.js';

export function pickBounded(
  hash: ConsistentHash,
  h: number,
  load: (id: string) => number,
  eligible: (id: string) => boolean,
  factor: number | undefined,
): string | undefined {
  let first: string | undefined;
  if (factor === undefined) {
    hash.walk(h, (id) => {
      if (!eligible(id)) return false;
      first = id;
      return true;
    });
    return first;
  }
  let total = 0;
  let count = 0;
  for (const m of hash.members) {
    if (eligible(m.id)) {
      count++;
      total += load(m.id);
    }
  }
  if (count === 0) return undefined;
  // The epsilon keeps float error (1.1 × 10 / 11 = 1.0000000000000002) from adding one.
  const bound = Math.ceil((factor * (total + 1)) / count - 1e-9);
  let chosen: string | undefined;
  let seen = 0;
  hash.walk(h, (id) => {
    if (!eligible(id)) return false;
    if (first === undefined) first = id;
    if (load(id) + 1 <= bound) {
      chosen = id;
      return true;
    }
    return ++seen === count;
  });
  return chosen ?? first;
}
