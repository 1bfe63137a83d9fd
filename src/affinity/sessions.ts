/**
 * Live sessions per backend: distinct session ids whose affinity is still valid. Each entry
 * expires when its cookie (or hash key) would: the count reaching zero means no client can
 * come back with a valid pin, which is what "drained" promises.
 */
export class SessionTable {
  readonly #entries = new Map<string, { backend: string; expiresAt: number }>();
  readonly #counts = new Map<string, number>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  touch(sessionId: string, backend: string, expiresAt: number): void {
    const prev = this.#entries.get(sessionId);
    if (prev) {
      if (prev.backend === backend) {
        prev.expiresAt = expiresAt;
        return;
      }
      this.#dec(prev.backend);
    }
    this.#entries.set(sessionId, { backend, expiresAt });
    this.#counts.set(backend, (this.#counts.get(backend) ?? 0) + 1);
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
