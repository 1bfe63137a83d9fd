import type { Dispatcher } from 'undici';
import type { UpstreamPool } from '../../src/proxy/upstream.js';
import type { Backend } from '../../src/balancer/types.js';

/** A backend record for algorithm tests (no sockets: the dispatcher is never used). */
export function fakeBackend(id: string, weight = 1, extra: Partial<Backend> = {}): Backend {
  const url = new URL(`http://127.0.0.1:1/${id}`);
  return {
    id, pool: 'p', url, origin: url.origin, weight, adminState: 'active', activeHealth: 'healthy', passiveDown: false,
    healthySince: 0, inFlight: 0, websockets: 0, dispatcher: {} as Dispatcher, upstream: {} as UpstreamPool, ...extra,
  };
}

/** Deterministic PRNG (mulberry32) so policy tests have fixed traces. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
