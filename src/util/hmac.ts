import { createHash } from 'node:crypto';
import { compress } from './sha256-compress.js';

/**
 * HMAC-SHA256 (RFC 2104, FIPS 180-4) for the affinity cookie's short messages, with the key's
 * inner and outer states computed once, as RFC 2104 §4 suggests: signing a 33-byte cookie body
 * is then two SHA-256 block compressions. Node's crypto cannot start a hash from a saved state,
 * so the compression is here, in JavaScript (sha256-compress.ts). Under a flood of new sessions
 * (one cookie signed per request) the two one-shot `crypto.hash` calls this replaces cost ~6 µs
 * per cookie in lb's request path, most of it call overhead; this costs ~0.9 µs. Constant time:
 * no branch or table index depends on the key or message. Same output as
 * `createHmac('sha256', key)` (tested on random keys and messages).
 */
const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

export class HmacSha256 {
  /** States after compressing K ⊕ ipad and K ⊕ opad (one block each). */
  readonly #innerStart: Int32Array;
  readonly #outerStart: Int32Array;
  readonly #state = new Int32Array(8);
  /** Padded tail blocks: the message's last bytes (inner), the inner digest (outer). */
  readonly #block: Uint8Array;
  readonly #outerBlock = new Uint8Array(64);
  readonly #max: number;

  constructor(secret: string | Buffer, maxMessage: number) {
    let key = Buffer.from(secret);
    if (key.length > 64) key = createHash('sha256').update(key).digest(); // RFC 2104 §2: hash long keys
    this.#max = maxMessage;
    this.#block = new Uint8Array(Math.ceil((maxMessage + 9) / 64) * 64);
    const pad = new Uint8Array(64);
    const start = (x: number): Int32Array => {
      for (let i = 0; i < 64; i++) pad[i] = (i < key.length ? key[i] : 0) ^ x;
      const s = new Int32Array(8);
      compress(IV, pad, 0, s);
      return s;
    };
    this.#innerStart = start(0x36);
    this.#outerStart = start(0x5c);
    // The outer message is always 64 + 32 bytes: its padding never changes.
    this.#outerBlock[32] = 0x80;
    this.#outerBlock[62] = (96 * 8) >>> 8;
    this.#outerBlock[63] = (96 * 8) & 0xff;
  }

  /** The 32-byte MAC of `msg` (at most `maxMessage` bytes). A fresh buffer. */
  digest(msg: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(32);
    this.digestInto(msg, msg.length, out, 0, 32);
    return out;
  }

  /**
   * The MAC of `msg[0..n]`, its first `outLength` bytes (≤ 32) written to `out` at `at`: no
   * buffer is allocated (a cookie is signed into its own bytes).
   */
  digestInto(msg: Uint8Array, n: number, out: Uint8Array, at: number, outLength: number): void {
    if (!(n >= 0 && n <= this.#max && n <= msg.length && Number.isInteger(n))) throw new RangeError(`message length ${n}: 0 to ${this.#max} bytes, within the buffer`);
    if (!(outLength >= 0 && outLength <= 32 && at >= 0 && at + outLength <= out.length)) throw new RangeError('output out of range (at most 32 bytes, within the buffer)');
    const s = this.#state;
    // Inner: H((K ⊕ ipad) ‖ msg), the key block already compressed. Padding: 0x80, zeros, and the
    // length in bits in the last 4 bytes (the 4 before them stay zero: the length is < 2^32).
    const block = this.#block;
    const end = Math.ceil((n + 9) / 64) * 64;
    for (let i = 0; i < n; i++) block[i] = msg[i];
    block[n] = 0x80;
    for (let i = n + 1; i < end - 4; i++) block[i] = 0;
    const bits = (64 + n) * 8;
    block[end - 4] = bits >>> 24;
    block[end - 3] = (bits >>> 16) & 0xff;
    block[end - 2] = (bits >>> 8) & 0xff;
    block[end - 1] = bits & 0xff;
    compress(this.#innerStart, block, 0, s);
    for (let off = 64; off < end; off += 64) compress(s, block, off, s);
    // Outer: H((K ⊕ opad) ‖ inner).
    const ob = this.#outerBlock;
    for (let i = 0; i < 8; i++) {
      const v = s[i];
      ob[i * 4] = v >>> 24;
      ob[i * 4 + 1] = (v >>> 16) & 0xff;
      ob[i * 4 + 2] = (v >>> 8) & 0xff;
      ob[i * 4 + 3] = v & 0xff;
    }
    compress(this.#outerStart, ob, 0, s);
    for (let i = 0; i < outLength; i++) out[at + i] = s[i >> 2] >>> (24 - 8 * (i & 3));
  }
}
