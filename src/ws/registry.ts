import type { Backend } from '../balancer/types.js';
import type { Tunnel } from './tunnel.js';

interface Entry {
  tunnel: Tunnel;
  backend: Backend;
}

/**
 * Every open tunnel, so shutdown and drain deadlines can reach them (Caddy's registration with
 * its own undo). Graceful closes are spread over time at `rate` per second with jitter, so
 * clients don't all reconnect in the same instant.
 */
export class WsRegistry {
  readonly #open = new Set<Entry>();
  readonly #random: () => number;
  #idleSweep?: NodeJS.Timeout;

  /** Close code for a tunnel that opens after its backend (or lb) stopped taking WebSockets; 0: none. */
  readonly #closeOnOpen: (b: Backend) => number;

  constructor(random: () => number = Math.random, closeOnOpen: (b: Backend) => number = () => 0) {
    this.#random = random;
    this.#closeOnOpen = closeOnOpen;
  }

  /** Register an open tunnel; counts it on its backend. Returns the undo. */
  add(tunnel: Tunnel, backend: Backend): () => void {
    const entry = { tunnel, backend };
    this.#open.add(entry);
    backend.websockets++;
    // One timer for all tunnels instead of two per tunnel: idle ones get 1001 Going Away.
    if (!this.#idleSweep) {
      this.#idleSweep = setInterval(() => this.#sweepIdle(Date.now()), 1000);
      this.#idleSweep.unref();
    }
    // An upgrade answered after a maint/remove/deadline/shutdown sweep took its snapshot is not
    // in that sweep: close it now (next turn, so the bytes that came with the 101 go first).
    const late = this.#closeOnOpen(backend);
    if (late) setImmediate(() => tunnel.close(late));
    let undone = false;
    return () => {
      if (undone) return;
      undone = true;
      this.#open.delete(entry);
      backend.websockets--;
      if (this.#open.size === 0) {
        clearInterval(this.#idleSweep);
        this.#idleSweep = undefined;
      }
    };
  }

  #sweepIdle(now: number): void {
    for (const { tunnel } of this.#open) {
      if (tunnel.idleMs > 0 && now - tunnel.lastActive >= tunnel.idleMs) tunnel.close(1001);
    }
  }

  get size(): number {
    return this.#open.size;
  }

  /**
   * Close matching tunnels with `code`, `rate` per second, each at a jittered slot.
   * Resolves when all are closed.
   */
  closeWhere(match: (b: Backend) => boolean, code: number, rate: number): Promise<void> {
    const targets = [...this.#open].filter((e) => match(e.backend));
    const slot = 1000 / rate;
    return new Promise((resolve) => {
      let left = targets.length;
      if (left === 0) return resolve();
      targets.forEach((e, i) => {
        const at = i * slot + this.#random() * slot;
        const timer = setTimeout(() => {
          e.tunnel.close(code);
          if (--left === 0) resolve();
        }, at);
        timer.unref();
      });
    });
  }
}
