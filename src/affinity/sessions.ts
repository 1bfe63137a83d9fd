/**
 * Live sessions per backend: distinct session ids whose affinity is still valid. Each entry
 * expires when its cookie (or hash key) would: the count reaching zero means no client can
 * come back with a valid pin, which is what "drained" promises.
 */
export class SessionTable {
  readonly #entries = new Map<string, { backend: string; expiresAt: number; holds?: number }>();
  readonly #counts = new Map<string, number>();
  readonly #now: () => number;

  /**
   * A flood of cookieless requests creates a session each; past this many entries the oldest
   * are forgotten (their counts drop early, their cookies keep working): memory stays bounded
   * (~150 bytes an entry, ~150 MB at the cap) instead of growing with request rate × maxIdle.
   */
  readonly #cap: number;

  constructor(now: () => number, cap = 1_000_000) {
    this.#now = now;
    this.#cap = cap;
  }

  touch(sessionId: string, backend: string, expiresAt: number): void {
    const prev = this.#entries.get(sessionId);
    if (prev) {
      if (prev.backend === backend) {
        if (!prev.holds) prev.expiresAt = Math.max(prev.expiresAt, expiresAt);
        return;
      }
      this.#dec(prev.backend);
    }
    if (!prev && this.#entries.size >= this.#cap) this.#evictOldest();
    this.#entries.set(sessionId, { backend, expiresAt });
    this.#counts.set(backend, (this.#counts.get(backend) ?? 0) + 1);
  }

  #evictOldest(): void {
    for (const [sid, e] of this.#entries) {
      if (e.holds) continue; // a WebSocket still uses it
      this.#entries.delete(sid);
      this.#dec(e.backend);
      return;
    }
  }

  /** Is this session still live on this backend (e.g. held by an open WebSocket)? */
  isLive(sessionId: string, backend: string): boolean {
    const e = this.#entries.get(sessionId);
    return e !== undefined && e.backend === backend && e.expiresAt > this.#now();
  }

  /**
   * Keep a session alive while something long-lived (a WebSocket) uses it; the undo lets it
   * idle out from then on (HAProxy #1480: a WebSocket user must not lose the session).
   */
  hold(sessionId: string, backend: string, idleMs: number): () => void {
    this.touch(sessionId, backend, Infinity);
    const e = this.#entries.get(sessionId)!;
    e.holds = (e.holds ?? 0) + 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const cur = this.#entries.get(sessionId);
      if (!cur || cur.backend !== backend) return;
      cur.holds = (cur.holds ?? 1) - 1;
      if (cur.holds <= 0) cur.expiresAt = this.#now() + idleMs;
    };
  }

  /** Sessions held by open WebSockets: [session id, backend]. */
  held(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [id, e] of this.#entries) if (e.holds) out.push([id, e.backend]);
    return out;
  }

  count(backend: string): number {
    return this.#counts.get(backend) ?? 0;
  }

  get size(): number {
    return this.#entries.size;
  }

  forgetBackend(backend: string): void {
    for (const [sid, e] of this.#entries) if (e.backend === backend) this.#entries.delete(sid);
    this.#counts.delete(backend);
  }

  /** Drop expired entries. O(n); run on a timer, not per request. */
  sweep(): void {
    const now = this.#now();
    for (const [sid, e] of this.#entries) {
      if (e.expiresAt <= now) {
        this.#entries.delete(sid);
        this.#dec(e.backend);
      }
    }
  }

  #dec(backend: string): void {
    const n = (this.#counts.get(backend) ?? 1) - 1;
    if (n <= 0) this.#counts.delete(backend);
    else this.#counts.set(backend, n);
  }
}
