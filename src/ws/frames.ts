import { randomBytes } from 'node:crypto';

/**
 * Tracks WebSocket frame boundaries in one direction of a tunnel as bytes pass (RFC 6455 §5.2),
 * without buffering payloads: only a frame header (≤ 14 bytes) is ever held. This is what lets
 * lb inject a close frame between frames (control frames may sit between fragments, §5.4).
 */
export class FrameTracker {
  /** Payload bytes left in the current frame. */
  #need = 0;
  /** Partial header bytes, allocated on first use (an idle tunnel holds none). */
  #hdr?: Buffer;
  #hdrLen = 0;

  /** True when the stream sits between two frames. */
  get atBoundary(): boolean {
    return this.#need === 0 && this.#hdrLen === 0;
  }

  /**
   * Advance over `chunk`; returns the offset just past the first frame that ends inside it
   * (a boundary), or -1 when no frame ends in this chunk.
   */
  firstBoundary(chunk: Buffer): number {
    let i = 0;
    let first = -1;
    while (i < chunk.length) {
      if (this.#need > 0) {
        const take = Math.min(this.#need, chunk.length - i);
        this.#need -= take;
        i += take;
        if (this.#need === 0 && first === -1) first = i;
        continue;
      }
      const hdr = (this.#hdr ??= Buffer.allocUnsafe(14));
      hdr[this.#hdrLen++] = chunk[i++];
      const len = headerLength(hdr, this.#hdrLen);
      if (len === -1 || this.#hdrLen < len) continue;
      this.#need = payloadLength(hdr);
      this.#hdrLen = 0;
      if (this.#need === 0 && first === -1) first = i;
    }
    return first;
  }
}

/** Total header length once enough bytes are known, else -1. */
function headerLength(h: Buffer, have: number): number {
  if (have < 2) return -1;
  const masked = (h[1] & 0x80) !== 0;
  const len7 = h[1] & 0x7f;
  const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
  return 2 + ext + (masked ? 4 : 0);
}

function payloadLength(h: Buffer): number {
  const len7 = h[1] & 0x7f;
  if (len7 === 126) return h.readUInt16BE(2);
  if (len7 === 127) return Number(h.readBigUInt64BE(2));
  return len7;
}

/** A close frame with a status code: unmasked toward clients, masked toward backends (§5.3). */
export function closeFrame(code: number, masked: boolean, reason = ''): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const mask = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, payload]);
}

export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_SERVICE_RESTART = 1012;
