/**
 * Consistent hashing for `affinity.mode: hash`.
 *
 * Algorithm: weighted Maglev (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
 * Load Balancer", NSDI 2016).
 *
 *  - Members are sorted by id, so the result depends only on ids, weights and the key.
 *  - Each member gets a permutation of the table slots from its id:
 *      offset = murmur3(id, seedA) mod M, skip = murmur3(id, seedB) mod (M-1) + 1.
 *  - The table (M slots, M prime) is filled in rounds; in each round every member claims
 *    `weight` slots (its next free slots in its own permutation): "proportional turns".
 *    Shares are therefore exact up to one partial round (error ≤ weight/(M/totalWeight)).
 *  - M is the smallest prime in a fixed list that is ≥ max(65537, 100 × totalWeight), so every
 *    unit of weight owns ≥ 100 slots (≤ 1% granularity). Caveat: when the total weight crosses
 *    a threshold (6.55k, 13.1k, ... total weight units) M changes and most keys remap.
 *  - lookup(h) = members[table[h mod M]]: one modulo and two array reads, O(1).
 *  - walk(h): the key's own probe sequence over the table, slot_i = (h + i·step(h)) mod M with
 *    step(h) = 1 + fmix32(h ^ c) mod (M-1) (M prime, so all M slots are visited); distinct owners
 *    are reported in order. The owner comes first; the next members are a key-specific
 *    pseudo-random weighted order (a slot-neighbour walk would be cheaper but correlates the
 *    overflow of one member onto the same few members). Members with no slot (impossible with
 *    the sizing above) are reported last in id order.
 *
 * Why Maglev rather than ketama or rendezvous: O(1) lookups (ketama is O(log(160·N)) with
 * cache misses; weighted rendezvous is O(N) per lookup), near-perfect balance because each
 * member's slot count differs by at most one round, and, with M ≫ N, disruption close to the
 * minimum (see bench/hash.ts for measured numbers). Rebuild is O(M log M) and only runs when
 * members or weights change.
 */
import { fmix32, hashKey2 } from './hash.js';

export interface HashMember {
  id: string;
  /** Integer 1..256. */
  weight: number;
}

export interface ConsistentHash {
  /** The member owning `h` (a key's hash). */
  lookup(h: number): string | undefined;
  /**
   * The key's preference order: the owner first, then the next members in this key's own order
   * (distinct ids, all members eventually). `visit` returns true to stop.
   */
  walk(h: number, visit: (id: string) => boolean): void;
  readonly members: readonly HashMember[];
}

/** Primes (65537 = 2^16+1, then the largest prime below 2^k). */
export const TABLE_PRIMES: readonly number[] = [
  65537, 131071, 262139, 524287, 1048573, 2097143, 4194301,
];

const SEED_OFFSET = 0x4d41474c; // "MAGL"
const SEED_SKIP = 0x45564f52; // "EVOR"
const WALK_MIX = 0x9e3779b9;

export function tableSizeFor(totalWeight: number): number {
  const want = 100 * totalWeight;
  for (const p of TABLE_PRIMES) if (p >= want) return p;
  return TABLE_PRIMES[TABLE_PRIMES.length - 1];
}

export class MaglevHash implements ConsistentHash {
  readonly members: readonly HashMember[];
  /** Table size (prime). */
  readonly size: number;
  private readonly ids: string[];
  private readonly table: Uint16Array | Uint32Array;

  constructor(members: HashMember[]) {
    const sorted = members
      .map((m) => {
        if (!Number.isInteger(m.weight) || m.weight < 1 || m.weight > 256) {
          throw new RangeError(`hash member ${JSON.stringify(m.id)}: weight must be an integer 1..256, got ${m.weight}`);
        }
        return Object.freeze({ id: m.id, weight: m.weight });
      })
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].id === sorted[i - 1].id) throw new RangeError(`hash member ${JSON.stringify(sorted[i].id)} listed twice`);
    }
    this.members = Object.freeze(sorted);
    this.ids = sorted.map((m) => m.id);
    const n = sorted.length;
    let total = 0;
    for (const m of sorted) total += m.weight;
    const M = tableSizeFor(total);
    this.size = M;
    const EMPTY = n < 0xffff ? 0xffff : 0xffffffff;
    const table = n < 0xffff ? new Uint16Array(M) : new Uint32Array(M);
    this.table = table;
    if (n === 0) return;
    table.fill(EMPTY);

    const pos = new Uint32Array(n);
    const skip = new Uint32Array(n);
    const weight = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      pos[i] = hashKey2(sorted[i].id, SEED_OFFSET) % M;
      skip[i] = (hashKey2(sorted[i].id, SEED_SKIP) % (M - 1)) + 1;
      weight[i] = sorted[i].weight;
    }
    let filled = 0;
    for (;;) {
      for (let i = 0; i < n; i++) {
        const s = skip[i];
        let p = pos[i];
        for (let t = weight[i]; t > 0; t--) {
          while (table[p] !== EMPTY) {
            p += s;
            if (p >= M) p -= M;
          }
          table[p] = i;
          p += s;
          if (p >= M) p -= M;
          if (++filled === M) return;
        }
        pos[i] = p;
      }
    }
  }

  lookup(h: number): string | undefined {
    return this.ids[this.table[(h >>> 0) % this.size]];
  }

  walk(h: number, visit: (id: string) => boolean): void {
    const ids = this.ids;
    const n = ids.length;
    if (n === 0) return;
    const table = this.table;
    const M = this.size;
    let slot = (h >>> 0) % M;
    let idx = table[slot];
    if (visit(ids[idx]) || n === 1) return;
    let seenCount = 1;
    const step = 1 + (fmix32((h ^ WALK_MIX) >>> 0) % (M - 1));
    if (n <= 32) {
      let mask = 1 << idx;
      for (let i = 1; i < M; i++) {
        slot += step;
        if (slot >= M) slot -= M;
        idx = table[slot];
        const bit = 1 << idx;
        if (mask & bit) continue;
        mask |= bit;
        if (visit(ids[idx]) || ++seenCount === n) return;
      }
      for (let i = 0; i < n; i++) if (!(mask & (1 << i)) && visit(ids[i])) return;
    } else {
      const seen = new Uint8Array(n);
      seen[idx] = 1;
      for (let i = 1; i < M; i++) {
        slot += step;
        if (slot >= M) slot -= M;
        idx = table[slot];
        if (seen[idx]) continue;
        seen[idx] = 1;
        if (visit(ids[idx]) || ++seenCount === n) return;
      }
      for (let i = 0; i < n; i++) if (!seen[i] && visit(ids[i])) return;
    }
  }
}

/** Builds the consistent hash for `members` (call again only when members or weights change). */
export function buildHash(members: HashMember[]): ConsistentHash {
  return new MaglevHash(members);
}

/**
 * Estimated fraction of keys whose owner differs between `a` and `b`, over `samples`
 * deterministic, uniformly spread key hashes.
 */
export function movedShare(a: ConsistentHash, b: ConsistentHash, samples = 100_000): number {
  if (samples <= 0) return 0;
  let moved = 0;
  for (let i = 0; i < samples; i++) {
    const h = fmix32(Math.imul(i, 0x9e3779b1) ^ 0x7f4a7c15);
    if (a.lookup(h) !== b.lookup(h)) moved++;
  }
  return moved / samples;
}
