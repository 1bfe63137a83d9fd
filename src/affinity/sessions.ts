/**
 * Live sessions per backend: distinct session ids whose affinity is still valid. Each entry
 * expires when its cookie (or hash key) would: the count reaching zero means no client can
 * come back with a valid pin, which is what "drained" promises.
 *
 * Layout, chosen for the garbage collector: one Map per backend from session id to its expiry in
 * whole seconds since the table's epoch (rounded up, so an entry may outlive its cookie by under a
 * second). Small integers are stored inline, so an entry is its id string and a map slot: no
 * record object and no boxed number per session. With a flood of cookieless requests (a new
 * session each) the old layout — a record and a boxed millisecond timestamp per entry — made
 * old-generation GC grow with the table (bench/RESULTS.md).
 */
const HELD = 2 ** 30 - 1; // an expiry that never comes: the session is held by a WebSocket

export class SessionTable {
  readonly #byBackend = new Map<string, Map<string, number>>();
  /** Session id → number of holders (open WebSockets); such entries have expiry HELD. */
  readonly #holds = new Map<string, number>();
  readonly #now: () => number;
  readonly #epoch: number;
  #size = 0;

  /**
   * A flood of cookieless requests creates a session each; past this many entries the oldest
   * are forgotten (their counts drop early, their cookies keep working): memory stays bounded
   * (~60 bytes an entry, ~60 MB at the cap) instead of growing with request rate × maxIdle.
   */
  readonly #cap: number;

  constructor(now: () => number, cap = 1_000_000) {
    this.#now = now;
    this.#epoch = now();
    this.#cap = cap;
  }

  #sec(ms: number): number {
    if (ms === Infinity) return HELD;
    return Math.min(HELD - 1, Math.ceil((ms - this.#epoch) / 1000));
  }

  #nowSec(): number {
    return (this.#now() - this.#epoch) / 1000;
  }

  /**
   * Record that the session is live on `backend` until `expiresAt` (ms). `from` is where the
   * caller knows it was: null for a session id just minted (nothing to look up), a backend id
   * for a re-pin, undefined when unknown (every backend's map is searched).
   */
  touch(sessionId: string, backend: string, expiresAt: number, from?: string | null): void {
    let map = this.#byBackend.get(backend);
    const prev = map?.get(sessionId);
    if (prev !== undefined) {
      const e = this.#sec(expiresAt);
      if (prev !== HELD && e > prev) map!.set(sessionId, e);
      return;
    }
    if (from !== null) this.#moveOut(sessionId, map, from);
    if (this.#size >= this.#cap) this.#evictOldest();
    if (!map) this.#byBackend.set(backend, (map = new Map()));
    map.set(sessionId, this.#sec(expiresAt));
    this.#size++;
  }

  /** A re-pinned session leaves its old backend's map. */
  #moveOut(sessionId: string, to: Map<string, number> | undefined, from: string | undefined): void {
    const maps = from !== undefined ? [this.#byBackend.get(from)] : this.#byBackend.values();
    for (const other of maps) {
      if (other && other !== to && other.delete(sessionId)) {
        this.#size--;
        this.#holds.delete(sessionId);
        return;
      }
    }
  }

  /** Forget the oldest entry of the largest backend that is not held by a WebSocket. */
  #evictOldest(): void {
    let largest: Map<string, number> | undefined;
    for (const m of this.#byBackend.values()) if (!largest || m.size > largest.size) largest = m;
    if (!largest) return;
    for (const [sid, e] of largest) {
      if (e === HELD) continue;
      largest.delete(sid);
      this.#size--;
      return;
    }
  }

  /** Is this session still live on this backend (e.g. held by an open WebSocket)? */
  isLive(sessionId: string, backend: string): boolean {
    const e = this.#byBackend.get(backend)?.get(sessionId);
    return e !== undefined && e > this.#nowSec();
  }

  /**
   * Keep a session alive while something long-lived (a WebSocket) uses it; the undo lets it
   * idle out from then on (HAProxy #1480: a WebSocket user must not lose the session).
   */
  hold(sessionId: string, backend: string, idleMs: number): () => void {
    this.touch(sessionId, backend, Infinity);
    this.#holds.set(sessionId, (this.#holds.get(sessionId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const map = this.#byBackend.get(backend);
      if (!map?.has(sessionId)) return;
      const n = (this.#holds.get(sessionId) ?? 1) - 1;
      if (n > 0) return void this.#holds.set(sessionId, n);
      this.#holds.delete(sessionId);
      map.set(sessionId, this.#sec(this.#now() + idleMs));
    };
  }

  /** Sessions held by open WebSockets: [session id, backend]. */
  held(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [backend, map] of this.#byBackend) for (const [id, e] of map) if (e === HELD) out.push([id, backend]);
    return out;
  }

  count(backend: string): number {
    return this.#byBackend.get(backend)?.size ?? 0;
  }

  get size(): number {
    return this.#size;
  }

  forgetBackend(backend: string): void {
    const map = this.#byBackend.get(backend);
    if (!map) return;
    for (const id of map.keys()) this.#holds.delete(id);
    this.#size -= map.size;
    this.#byBackend.delete(backend);
  }

  /** Drop expired entries. O(n); run on a timer, not per request. */
  sweep(): void {
    const now = this.#nowSec();
    for (const [backend, map] of this.#byBackend) {
      for (const [sid, e] of map) {
        if (e <= now) {
          map.delete(sid);
          this.#size--;
        }
      }
      if (map.size === 0) this.#byBackend.delete(backend);
    }
  }
}
