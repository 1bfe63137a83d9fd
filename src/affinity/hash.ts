import type { HashAffinityConfig } from '../config/types.js';
import type { PoolView } from '../balancer/registry.js';
import { acceptsNew, health, type Backend } from '../balancer/types.js';
import type { ExplainResult } from '../admin/wire.js';
import { hashKey } from '../hash/hash.js';
import { buildHash, movedShare, type ConsistentHash, type HashMember } from '../hash/ring.js';
import { pickBounded } from '../hash/bounded.js';
import { RecentKeys } from '../hash/recent.js';
import { readCookie } from './cookie-header.js';
import type { Affinity, Decision, Lookup, RequestFacts, TouchSink } from './types.js';

type KeyReader = (req: RequestFacts) => string | undefined;

/** `source-ip` | `header:NAME` | `cookie:NAME` | `query:NAME` → a reader. */
export function keyReader(spec: string): KeyReader {
  if (spec === 'source-ip') return (req) => req.clientIp || undefined;
  const colon = spec.indexOf(':');
  const kind = spec.slice(0, colon);
  const name = spec.slice(colon + 1);
  switch (kind) {
    case 'header': {
      const lower = name.toLowerCase();
      return (req) => {
        const v = req.headers[lower];
        const s = Array.isArray(v) ? v[0] : v;
        return s ? s : undefined;
      };
    }
    case 'cookie':
      return (req) => readCookie(req.headers.cookie, name) || undefined;
    case 'query':
      return (req) => {
        const q = req.url.indexOf('?');
        if (q === -1) return undefined;
        return new URLSearchParams(req.url.slice(q + 1)).get(name) || undefined;
      };
    default:
      throw new Error(`unknown hash key "${spec}"`);
  }
}

/**
 * `mode: hash` (SPEC §3): a request's key (client address, header, cookie or query parameter) is
 * hashed onto the pool's backends with a weighted Maglev table (src/hash/ring.ts), rebuilt only
 * when the backend set or weights change. The choice depends only on the key and the backend set,
 * so every worker and every lb instance agrees.
 *
 * - Bounded loads (`balanceFactor`): a key is never handed to a backend whose load (in-flight +
 *   WebSockets) would exceed factor × mean; it walks to the next backend in its own order.
 * - Draining: keys seen within `maxIdle` (RecentKeys, `memory` keys at most) keep their backend
 *   while it drains; keys not seen before never reach a draining backend.
 * - A down or maint owner's keys re-pin (reason down/maint), like cookie sessions.
 */
export class HashAffinity implements Affinity {
  readonly mode = 'hash' as const;
  readonly #config: HashAffinityConfig;
  readonly #read: KeyReader;
  readonly #recent: RecentKeys;
  /** Keys held by open WebSockets (count per key): kept alive by the sweep. */
  readonly #held = new Map<string, { backend: string; n: number }>();
  #hash: ConsistentHash = buildHash([]);
  #signature = '';
  #generation = -1;

  readonly #onTouch?: TouchSink;
  readonly #now: () => number;

  constructor(opts: { config: HashAffinityConfig; now: () => number; onTouch?: TouchSink }) {
    this.#config = opts.config;
    this.#onTouch = opts.onTouch;
    this.#now = opts.now;
    this.#read = keyReader(opts.config.key);
    this.#recent = new RecentKeys({ capacity: opts.config.memory, maxIdle: opts.config.maxIdle, now: opts.now });
  }

  lookup(req: RequestFacts, view: PoolView): Lookup {
    const key = this.#read(req);
    if (key === undefined) return { kind: 'none' };
    const session = { id: key, issuedAt: 0, lastSeen: 0 };
    const remembered = this.#recent.get(key);
    if (remembered !== undefined && view.byId.has(remembered)) return { kind: 'pinned', backendId: remembered, session, hashKey: key };
    // Not remembered: the key's owner, if it cannot serve at all, makes this a re-pin (with the
    // reason); otherwise the key is placed along its own order.
    const owner = this.#table(view).lookup(hashKey(key));
    const b = owner === undefined ? undefined : view.byId.get(owner);
    if (b && (b.adminState === 'maint' || health(b) === 'unhealthy')) return { kind: 'pinned', backendId: b.id, session, hashKey: key };
    return { kind: 'none', hashKey: key };
  }

  place(lookup: Lookup, view: PoolView): Backend | undefined {
    if (lookup.hashKey === undefined) return undefined; // no key: the pool's balancing policy
    const id = pickBounded(
      this.#table(view),
      hashKey(lookup.hashKey),
      (x) => {
        const b = view.byId.get(x)!;
        return b.inFlight + b.websockets;
      },
      (x) => acceptsNew(view.byId.get(x)!),
      this.#config.balanceFactor,
    );
    return id === undefined ? undefined : view.byId.get(id);
  }

  persist(d: Decision): undefined {
    const key = d.lookup.hashKey;
    if (key === undefined) return undefined;
    d.sessionId = key;
    this.#recent.touch(key, d.backend.id);
    this.#onTouch?.(key, d.backend.id, this.#now() + this.#config.maxIdle);
    return undefined;
  }

  hold(d: Decision): () => void {
    const key = d.lookup.hashKey;
    if (key === undefined) return () => undefined;
    let rec = this.#held.get(key);
    if (!rec || rec.backend !== d.backend.id) this.#held.set(key, (rec = { backend: d.backend.id, n: 0 }));
    rec.n++;
    const mine = rec;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // Re-pinned elsewhere (a newer record) or its backend forgotten (drain deadline): not ours to end.
      if (this.#held.get(key) !== mine) return;
      if (--mine.n > 0) return;
      this.#held.delete(key);
      this.#recent.touch(key, d.backend.id); // idles out from now
    };
  }

  remember(key: string, backendId: string): void {
    this.#recent.touch(key, backendId);
  }

  keysOf(backendId: string): string[] {
    this.#recent.sweep();
    return this.#recent.keysOf(backendId);
  }

  held(): Array<[string, string]> {
    return [...this.#held].map(([k, h]) => [k, h.backend]);
  }

  liveSessions(backendId: string): number {
    return this.#recent.count(backendId);
  }

  forgetBackend(backendId: string): void {
    this.#recent.forgetBackend(backendId);
    for (const [k, h] of this.#held) if (h.backend === backendId) this.#held.delete(k);
  }

  /** Parts of a sweep since the held keys were last refreshed (they are, once per whole sweep). */
  #swept = 1;

  sweep(part = 1): void {
    this.#swept += part;
    if (this.#swept >= 1 - 1e-9) { // ten parts of 0.1 add up to 0.9999…
      this.#swept = 0;
      for (const [k, h] of this.#held) this.#recent.touch(k, h.backend);
    }
    this.#recent.sweep(); // cheap whatever the part: it stops at the first key still live
  }

  /** Admin `plan`: the share of keys whose owner changes if the pool became `next`. */
  keyShareMoved(next: HashMember[]): number {
    return movedShare(this.#hash, buildHash(hashWeights(next)));
  }

  /** Admin `explain key=K`. */
  explain(key: string, view: PoolView, pool: string): ExplainResult {
    const steps: string[] = [];
    const table = this.#table(view);
    const order: string[] = [];
    table.walk(hashKey(key), (id) => (order.push(id), order.length >= 4));
    steps.push(`key "${key}" hashes to ${hashKey(key)}; its order over ${table.members.length} backends: ${order.join(' → ')}${table.members.length > 4 ? ' …' : ''}`);
    const remembered = this.#recent.get(key);
    if (remembered) steps.push(`seen within maxIdle on ${remembered}: it stays there while that backend serves existing sessions`);
    else steps.push('not seen recently: placed on the first backend in its order that takes new sessions' + (this.#config.balanceFactor ? ` and is within balanceFactor ${this.#config.balanceFactor} of the mean load` : ''));
    const target = remembered ?? this.place({ kind: 'none', hashKey: key }, view)?.id ?? null;
    return { pool, mode: 'hash', steps, backend: target, result: remembered ? 'hit' : target ? 'new' : 'no backend' };
  }

  /** The table for this view's backend set, rebuilt only when ids or weights changed. */
  #table(view: PoolView): ConsistentHash {
    if (view.generation === this.#generation) return this.#hash;
    this.#generation = view.generation;
    const members = hashWeights(view.all);
    const signature = members.map((m) => `${m.id}:${m.weight}`).join(',');
    if (signature !== this.#signature) {
      this.#signature = signature;
      this.#hash = buildHash(members);
    }
    return this.#hash;
  }
}

/**
 * Weights for the table: divided by their common divisor, then scaled down proportionally when
 * the largest exceeds the table's 256 (lb accepts weights up to 1000), never below 1.
 */
export function hashWeights(all: ReadonlyArray<{ id: string; weight: number }>): HashMember[] {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const g = all.reduce((acc, b) => gcd(acc, b.weight), 0) || 1;
  const max = Math.max(1, ...all.map((b) => b.weight / g));
  const scale = max > 256 ? 256 / max : 1;
  return all.map((b) => ({ id: b.id, weight: Math.max(1, Math.round((b.weight / g) * scale)) }));
}
