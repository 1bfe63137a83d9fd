import type { Duplex } from 'node:stream';
import { closeFrame, FrameTracker } from './frames.js';

/**
 * One WebSocket tunnel: bytes flow both ways with backpressure; close or error on either side
 * ends the other through exactly one cleanup path. Frames are tracked (not parsed or buffered)
 * in both directions so `close(code)` can send a proper close frame to each side at a frame
 * boundary: 1001/1012 to the client, the same code (masked) to the backend.
 */
export class Tunnel {
  readonly #client: Duplex;
  readonly #backend: Duplex;
  readonly #toClient = new FrameTracker();
  readonly #toBackend = new FrameTracker();
  /** Direction closed by lb (a close frame was injected; later bytes are dropped). */
  #clientClosed = false;
  #backendClosed = false;
  #pendingCode = 0;
  #done = false;
  readonly #onEnd: () => void;
  #closeTimer?: NodeJS.Timeout;

  constructor(client: Duplex, backend: Duplex, opts: { idleMs: number; onEnd: () => void }) {
    this.#client = client;
    this.#backend = backend;
    this.#onEnd = opts.onEnd;
    this.#pump(client, backend, this.#toBackend, 'backend');
    this.#pump(backend, client, this.#toClient, 'client');
    this.idleMs = opts.idleMs;
    const destroy = (): void => this.destroy();
    for (const s of [client, backend]) {
      s.on('error', destroy);
      s.on('close', destroy);
    }
    client.on('end', () => this.#backend.end());
    backend.on('end', () => this.#client.end());
  }

  /** Idle limit in ms (0: none); the registry's sweep closes tunnels idle longer (no timer per socket). */
  readonly idleMs: number;
  /** When bytes last passed either way (ms since the epoch). */
  lastActive = Date.now();

  get open(): boolean {
    return !this.#done;
  }

  /**
   * Close both sides gracefully with `code`: each side gets a close frame at its next frame
   * boundary; the sockets are ended once both frames are out (or after 5 s at most).
   */
  close(code: number): void {
    if (this.#done || this.#pendingCode) return;
    this.#pendingCode = code;
    if (this.#toClient.atBoundary) this.#sendClose('client');
    if (this.#toBackend.atBoundary) this.#sendClose('backend');
    this.#closeTimer = setTimeout(() => this.destroy(), 5000);
    this.#closeTimer.unref();
  }

  destroy(): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#closeTimer);
    this.#client.destroy();
    this.#backend.destroy();
    this.#onEnd();
  }

  /** Feed bytes from `from` to `to`, tracking frames; at a boundary after close(), inject the frame. */
  #pump(from: Duplex, to: Duplex, tracker: FrameTracker, target: 'client' | 'backend'): void {
    from.on('data', (chunk: Buffer) => {
      this.lastActive = Date.now();
      if (target === 'client' ? this.#clientClosed : this.#backendClosed) return;
      if (!this.#pendingCode) {
        tracker.firstBoundary(chunk);
        if (!to.write(chunk)) from.pause();
        return;
      }
      const wasAtBoundary = tracker.atBoundary;
      const cut = wasAtBoundary ? 0 : tracker.firstBoundary(chunk);
      if (cut === -1) {
        to.write(chunk);
        return;
      }
      if (cut > 0) to.write(chunk.subarray(0, cut));
      this.#sendClose(target);
    });
    to.on('drain', () => from.resume());
  }

  #sendClose(target: 'client' | 'backend'): void {
    const toClient = target === 'client';
    if (toClient ? this.#clientClosed : this.#backendClosed) return;
    if (toClient) this.#clientClosed = true;
    else this.#backendClosed = true;
    const socket = toClient ? this.#client : this.#backend;
    socket.end(closeFrame(this.#pendingCode, !toClient));
    if (this.#clientClosed && this.#backendClosed) {
      // Both frames are out: give the peers a moment to read them, then free everything.
      clearTimeout(this.#closeTimer);
      this.#closeTimer = setTimeout(() => this.destroy(), 1000);
      this.#closeTimer.unref();
    }
  }
}
