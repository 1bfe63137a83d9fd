import { describe, it, expect } from 'vitest';
import { hashKey, hashKey2, hashBytes } from '../src/hash/hash.js';
import { buildHash, movedShare, TABLE_PRIMES, type ConsistentHash, type HashMember } from '../src/hash/ring.js';
import { pickBounded } from '../src/hash/bounded.js';
import { RecentKeys } from '../src/hash/recent.js';
import { HashAffinity } from '../src/affinity/hash.js';
import type { Decision } from '../src/affinity/types.js';
import { pinnedReason } from '../src/balancer/select.js';
import type { Backend } from '../src/balancer/types.js';
import { seeded } from './helpers/fakes.js';

// ---- fixtures --------------------------------------------------------------------------------

/** Deterministic uint32s (the shared mulberry32, scaled back: exact) so every run sees the same keys. */
function rng(seed: number): () => number {
  const next = seeded(seed);
  return () => next() * 4294967296;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_';
const N_KEYS = 1_000_000;
let hashesCache: Uint32Array | undefined;
/** 1M random 32-char keys, hashed once with hashKey. */
function keyHashes(): Uint32Array {
  if (hashesCache) return hashesCache;
  const next = rng(12345);
  const out = new Uint32Array(N_KEYS);
  for (let i = 0; i < N_KEYS; i++) {
    let s = '';
    for (let j = 0; j < 4; j++) {
      const r = next();
      for (let b = 0; b < 32; b += 4) s += ALPHABET[(r >>> b) & 63];
    }
    out[i] = hashKey(s);
  }
  return (hashesCache = out);
}

const equal = (n: number, prefix = 'backend-'): HashMember[] =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, weight: 1 }));

function shares(hash: ConsistentHash, hs: Uint32Array): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < hs.length; i++) {
    const id = hash.lookup(hs[i])!;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

function moved(a: ConsistentHash, b: ConsistentHash, hs: Uint32Array): number {
  let m = 0;
  for (let i = 0; i < hs.length; i++) if (a.lookup(hs[i]) !== b.lookup(hs[i])) m++;
  return m / hs.length;
}

function walkAll(hash: ConsistentHash, h: number): string[] {
  const out: string[] = [];
  hash.walk(h, (id) => {
    out.push(id);
    return false;
  });
  return out;
}

function shuffle<T>(xs: T[], seed: number): T[] {
  const a = xs.slice();
  const next = rng(seed);
  for (let i = a.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

// ---- hash function ---------------------------------------------------------------------------

describe('hashKey (MurmurHash3 x86_32)', () => {
  it.each([
    ['', 0, 0x00000000],
    ['', 1, 0x514e28b7],
    ['', 0xffffffff, 0x81f16f39],
    ['hello', 0, 0x248bfa47],
    ['Hello, world!', 0, 0xc0363e43],
    ['The quick brown fox jumps over the lazy dog', 0, 0x2e4ff723],
  ])('%j seed %d → %i', (key, seed, want) => {
    expect(hashKey2(key, seed)).toBe(want);
    expect(hashBytes(Buffer.from(key), seed)).toBe(want);
  });

  it.each(['é', 'héllo', 'ab€', 'abc😀', '😀😀😀😀', 'ascii-then-ü-and-more-text', 'x'.repeat(300) + 'ß'])(
    'non-ASCII %j hashes its UTF-8 bytes',
    (key) => {
      expect(hashKey(key)).toBe(hashBytes(Buffer.from(key, 'utf8')));
      expect(hashKey2(key, 7)).toBe(hashBytes(Buffer.from(key, 'utf8'), 7));
    },
  );

  it('returns uint32 and seeds are independent', () => {
    for (const k of ['a', 'bb', 'ccc', 'dddd', 'session-123']) {
      const h = hashKey(k);
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      expect(hashKey2(k, 1)).not.toBe(h);
    }
  });
});

// ---- ring ------------------------------------------------------------------------------------

describe('buildHash (weighted Maglev)', () => {
  it('table sizes are primes', () => {
    for (const p of TABLE_PRIMES) {
      for (let d = 2; d * d <= p; d++) expect(p % d, `${p} divisible by ${d}`).not.toBe(0);
    }
  });

  it.each([
    { n: 10, max: 1.02 },
    { n: 5, max: 1.02 },
    { n: 2, max: 1.02 },
  ])('balance: $n equal members, 1M keys, max/mean ≤ $max', ({ n, max }) => {
    const hs = keyHashes();
    const counts = shares(buildHash(equal(n)), hs);
    expect(counts.size).toBe(n);
    const ratio = Math.max(...counts.values()) / (hs.length / n);
    expect(ratio).toBeLessThanOrEqual(max);
  });

  it.each([
    { name: 'add an 11th to 10', from: equal(10), to: [...equal(10), { id: 'new-one', weight: 1 }], ideal: 1 / 11, slack: 1.1 },
    { name: 'remove backend-0 of 10', from: equal(10), to: equal(10).filter((m) => m.id !== 'backend-0'), ideal: 1 / 10, slack: 1.15 },
    { name: 'remove backend-4 of 10', from: equal(10), to: equal(10).filter((m) => m.id !== 'backend-4'), ideal: 1 / 10, slack: 1.15 },
    { name: 'remove backend-9 of 10', from: equal(10), to: equal(10).filter((m) => m.id !== 'backend-9'), ideal: 1 / 10, slack: 1.15 },
  ])('disruption: $name moves ≤ $slack × ideal', ({ from, to, ideal, slack }) => {
    const hs = keyHashes();
    const a = buildHash(from);
    const b = buildHash(to);
    const share = moved(a, b, hs);
    expect(share).toBeGreaterThanOrEqual(ideal * 0.95);
    expect(share).toBeLessThanOrEqual(ideal * slack);
    // movedShare's deterministic sample agrees with the 1M-key measurement.
    expect(Math.abs(movedShare(a, b) - share)).toBeLessThan(0.005);
  });

  it('disruption: removing any one of 10 (sampled) stays within 1.15 × 1/10', () => {
    const base = buildHash(equal(10));
    for (let k = 0; k < 10; k++) {
      const b = buildHash(equal(10).filter((m) => m.id !== `backend-${k}`));
      expect(movedShare(base, b)).toBeLessThanOrEqual(1.15 / 10);
    }
  });

  it.each([
    { weights: [1, 2, 3] },
    { weights: [1, 1, 2, 4] },
    { weights: [3, 3, 3, 1] },
  ])('weights $weights: shares within ±3% relative', ({ weights }) => {
    const hs = keyHashes();
    const members = weights.map((w, i) => ({ id: `w${i}`, weight: w }));
    const total = weights.reduce((s, w) => s + w, 0);
    const counts = shares(buildHash(members), hs);
    weights.forEach((w, i) => {
      const got = (counts.get(`w${i}`) ?? 0) / hs.length;
      expect(Math.abs(got / (w / total) - 1), `w${i}: ${got}`).toBeLessThanOrEqual(0.03);
    });
  });

  it('is deterministic: member order does not matter', () => {
    const members: HashMember[] = [
      ...equal(12),
      { id: 'heavy', weight: 7 },
      { id: 'light', weight: 1 },
    ];
    const a = buildHash(members);
    const hs = keyHashes().subarray(0, 100_000);
    for (const seed of [1, 2, 3]) {
      const b = buildHash(shuffle(members, seed));
      expect(b.members).toEqual(a.members);
      expect(movedShare(a, b)).toBe(0);
      for (let i = 0; i < hs.length; i++) if (a.lookup(hs[i]) !== b.lookup(hs[i])) throw new Error(`key ${i} differs`);
      for (let i = 0; i < 200; i++) expect(walkAll(b, hs[i])).toEqual(walkAll(a, hs[i]));
    }
  });

  it.each([
    { name: '1 member', members: equal(1) },
    { name: '2 members', members: equal(2) },
    { name: '10 members', members: equal(10) },
    { name: '32 members (bitmask path)', members: equal(32) },
    { name: '33 members (array path)', members: equal(33) },
    { name: '100 members', members: equal(100) },
    { name: 'weighted', members: [{ id: 'a', weight: 1 }, { id: 'b', weight: 256 }, { id: 'c', weight: 17 }] },
  ])('walk ($name): owner first, distinct ids, covers all members', ({ members }) => {
    const hash = buildHash(members);
    const all = members.map((m) => m.id).sort();
    const hs = keyHashes();
    for (let i = 0; i < 300; i++) {
      const order = walkAll(hash, hs[i]);
      expect(order[0]).toBe(hash.lookup(hs[i]));
      expect(new Set(order).size).toBe(order.length);
      expect(order.slice().sort()).toEqual(all);
    }
  });

  it('walk stops when visit returns true', () => {
    const hash = buildHash(equal(10));
    const seen: string[] = [];
    hash.walk(hashKey('k'), (id) => {
      seen.push(id);
      return seen.length === 3;
    });
    expect(seen.length).toBe(3);
  });

  it("walk: a member's overflow spreads over the others (second choice ≈ uniform)", () => {
    const hash = buildHash(equal(10));
    const hs = keyHashes().subarray(0, 200_000);
    const second = new Map<string, number>();
    let owned = 0;
    for (let i = 0; i < hs.length; i++) {
      if (hash.lookup(hs[i]) !== 'backend-0') continue;
      owned++;
      let n = 0;
      hash.walk(hs[i], (id) => {
        if (++n === 2) second.set(id, (second.get(id) ?? 0) + 1);
        return n === 2;
      });
    }
    expect(second.size).toBe(9);
    for (const c of second.values()) expect(Math.abs(c / (owned / 9) - 1)).toBeLessThan(0.15);
  });

  it('empty member list', () => {
    const hash = buildHash([]);
    expect(hash.lookup(123)).toBeUndefined();
    const seen: string[] = [];
    hash.walk(123, (id) => (seen.push(id), false));
    expect(seen).toEqual([]);
  });

  it.each([
    { members: [{ id: 'a', weight: 0 }] },
    { members: [{ id: 'a', weight: 257 }] },
    { members: [{ id: 'a', weight: 1.5 }] },
    { members: [{ id: 'a', weight: 1 }, { id: 'a', weight: 2 }] },
  ])('rejects invalid members $members', ({ members }) => {
    expect(() => buildHash(members)).toThrow(RangeError);
  });

  it('lookup accepts signed 32-bit hashes like their unsigned value', () => {
    const hash = buildHash(equal(10));
    expect(hash.lookup(-1)).toBe(hash.lookup(0xffffffff));
  });
});

// ---- bounded loads ---------------------------------------------------------------------------

describe('pickBounded', () => {
  it.each([{ factor: 1.25 }, { factor: 1.1 }, { factor: 1.5 }])(
    'never exceeds ceil(factor × mean) with factor $factor; most keys go to their owner',
    ({ factor }) => {
      const hash = buildHash(equal(10));
      const load = new Map<string, number>(hash.members.map((m) => [m.id, 0]));
      const hs = keyHashes();
      let atOwner = 0;
      const N = 10_000;
      for (let i = 0; i < N; i++) {
        const id = pickBounded(hash, hs[i], (x) => load.get(x)!, () => true, factor)!;
        load.set(id, load.get(id)! + 1);
        if (id === hash.lookup(hs[i])) atOwner++;
        const mean = (i + 1) / 10;
        const max = Math.max(...load.values());
        if (max > Math.ceil(factor * mean - 1e-9)) throw new Error(`step ${i}: max ${max} > ceil(${factor} × ${mean})`);
      }
      if (factor === 1.25) expect(atOwner / N).toBeGreaterThanOrEqual(0.9);
    },
  );

  it('without factor: first eligible member in the walk', () => {
    const hash = buildHash(equal(10));
    const h = hashKey('some-key');
    const order = walkAll(hash, h);
    expect(pickBounded(hash, h, () => 1e9, () => true, undefined)).toBe(order[0]);
    const skip = new Set(order.slice(0, 3));
    expect(pickBounded(hash, h, () => 0, (id) => !skip.has(id), undefined)).toBe(order[3]);
  });

  it('skips ineligible and overloaded members in walk order', () => {
    const hash = buildHash(equal(5));
    const h = hashKey('another-key');
    const order = walkAll(hash, h);
    // owner ineligible, second overloaded → third.
    const loads = new Map(order.map((id) => [id, 0]));
    loads.set(order[1], 100);
    const pick = pickBounded(hash, h, (id) => loads.get(id)!, (id) => id !== order[0], 1.25);
    expect(pick).toBe(order[2]);
  });

  it('returns the first eligible when none is under the bound, undefined when none eligible', () => {
    const hash = buildHash(equal(4));
    const h = hashKey('k');
    const order = walkAll(hash, h);
    expect(pickBounded(hash, h, () => 10, () => true, 0.5)).toBe(order[0]);
    expect(pickBounded(hash, h, () => 10, (id) => id !== order[0], 0.5)).toBe(order[1]);
    expect(pickBounded(hash, h, () => 0, () => false, 1.25)).toBeUndefined();
    expect(pickBounded(hash, h, () => 0, () => false, undefined)).toBeUndefined();
    expect(pickBounded(buildHash([]), h, () => 0, () => true, 1.25)).toBeUndefined();
  });
});

// ---- RecentKeys ------------------------------------------------------------------------------

describe('RecentKeys', () => {
  const make = (capacity: number, maxIdle: number) => {
    const clock = { t: 1_000 };
    const rk = new RecentKeys({ capacity, maxIdle, now: () => clock.t });
    return { rk, clock };
  };

  it('evicts the least recently touched key at capacity', () => {
    const { rk } = make(3, 1e9);
    rk.touch('a', 'b1');
    rk.touch('b', 'b1');
    rk.touch('c', 'b2');
    rk.touch('a', 'b1'); // a is now most recent; b is the LRU
    rk.touch('d', 'b2');
    expect(rk.size).toBe(3);
    expect(rk.get('b')).toBeUndefined();
    expect(rk.get('a')).toBe('b1');
    expect(rk.get('c')).toBe('b2');
    expect(rk.get('d')).toBe('b2');
    expect(rk.count('b1')).toBe(1);
    expect(rk.count('b2')).toBe(2);
  });

  it('expires idle keys (injected clock)', () => {
    const { rk, clock } = make(100, 50);
    rk.touch('a', 'b1');
    clock.t += 30;
    rk.touch('b', 'b1');
    clock.t += 20; // a idle 50: still live
    expect(rk.get('a')).toBe('b1');
    clock.t += 1; // a idle 51: expired; get does not refresh
    expect(rk.get('a')).toBeUndefined();
    expect(rk.size).toBe(1);
    expect(rk.count('b1')).toBe(1);
    rk.touch('b', 'b1'); // touch refreshes
    clock.t += 50;
    expect(rk.get('b')).toBe('b1');
  });

  it('counts per backend are exact after sweep', () => {
    const { rk, clock } = make(10_000, 100);
    const truth = new Map<string, { backend: string; last: number }>();
    const next = rng(7);
    for (let i = 0; i < 5_000; i++) {
      clock.t += next() % 3;
      const key = `k${next() % 2_000}`;
      const backend = `b${next() % 4}`;
      rk.touch(key, backend);
      truth.set(key, { backend, last: clock.t });
      if (i % 500 === 499) {
        rk.sweep();
        const want = new Map<string, number>();
        for (const e of truth.values()) if (clock.t - e.last <= 100) want.set(e.backend, (want.get(e.backend) ?? 0) + 1);
        for (const b of ['b0', 'b1', 'b2', 'b3']) expect(rk.count(b), `${b} at step ${i}`).toBe(want.get(b) ?? 0);
        expect(rk.size).toBe([...want.values()].reduce((s, c) => s + c, 0));
      }
    }
    clock.t += 101;
    rk.sweep();
    expect(rk.size).toBe(0);
    for (const b of ['b0', 'b1', 'b2', 'b3']) expect(rk.count(b)).toBe(0);
  });

  it('moving a key to another backend updates both counts', () => {
    const { rk } = make(10, 1e9);
    rk.touch('k', 'b1');
    rk.touch('k', 'b2');
    expect(rk.count('b1')).toBe(0);
    expect(rk.count('b2')).toBe(1);
    expect(rk.get('k')).toBe('b2');
  });

  it('forgetBackend drops all its keys and its count', () => {
    const { rk } = make(100, 1e9);
    for (let i = 0; i < 30; i++) rk.touch(`k${i}`, `b${i % 3}`);
    expect(rk.count('b1')).toBe(10);
    rk.forgetBackend('b1');
    expect(rk.count('b1')).toBe(0);
    expect(rk.size).toBe(20);
    expect(rk.get('k1')).toBeUndefined();
    expect(rk.get('k0')).toBe('b0');
    expect(rk.count('b0')).toBe(10);
    rk.forgetBackend('nope');
    expect(rk.size).toBe(20);
  });
});

describe('HashAffinity housekeeping', () => {
  it('swept in parts, a key held by a WebSocket is refreshed once per whole sweep and outlives maxIdle; released, it idles out', () => {
    let now = 0;
    const a = new HashAffinity({ config: { key: 'header:x-user', memory: 1000, maxIdle: 10_000 }, now: () => now });
    const held = { lookup: { kind: 'none', hashKey: 'k-held' }, backend: { id: 'n1' } } as unknown as Decision;
    const release = a.hold(held);
    a.sweep(1 / 20); // the first call refreshes: the key is recorded
    expect(a.liveSessions('n1')).toBe(1);
    for (let i = 0; i < 300; i++) { // 30 s in twentieths of a sweep every 100 ms: a whole sweep every 2 s
      now += 100;
      a.sweep(1 / 20);
    }
    expect(a.liveSessions('n1')).toBe(1); // three maxIdles later, still there
    release();
    for (let i = 0; i < 120; i++) {
      now += 100;
      a.sweep(1 / 20);
    }
    expect(a.liveSessions('n1')).toBe(0);
  });

  it("a WebSocket's release ends only its own hold: not a newer one elsewhere (re-pinned), nor a backend forgotten at its deadline", () => {
    const now = 0;
    const a = new HashAffinity({ config: { key: 'header:x-user', memory: 1000, maxIdle: 10_000 }, now: () => now });
    const on = (id: string) => ({ lookup: { kind: 'none', hashKey: 'alice' }, backend: { id } }) as unknown as Decision;
    // alice's first socket on n2; n2 goes to maint; her second socket re-pins to n1.
    const first = a.hold(on('n2'));
    const second = a.hold(on('n1'));
    a.sweep();
    first(); // n2's socket closes late (its 1012)
    a.sweep();
    expect(a.liveSessions('n1')).toBe(1);
    expect(a.liveSessions('n2')).toBe(0);
    second();
    // A hold on a backend forgotten at its drain deadline leaves nothing behind when it closes.
    const third = a.hold(on('n3'));
    a.sweep();
    a.forgetBackend('n3');
    third();
    a.sweep();
    expect(a.liveSessions('n3')).toBe(0);
  });
});

describe('pinnedReason', () => {
  it('re-pins a session whose backend is drained (by its deadline or with nothing left), as while draining past the deadline', () => {
    const b = (adminState: string, drainDeadline?: number) => ({ adminState, health: 'healthy', drainDeadline }) as unknown as Backend;
    expect(pinnedReason(b('active'), 10)).toBeUndefined();
    expect(pinnedReason(b('draining', 100), 10)).toBeUndefined();
    expect(pinnedReason(b('draining', 100), 200)).toBe('deadline');
    expect(pinnedReason(b('drained'), 10)).toBe('deadline');
  });
});
