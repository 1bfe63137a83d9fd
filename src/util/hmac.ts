import { createHash } from 'node:crypto';
import { compress } from './sha256-compress.js';

/**
 * HMAC-SHA256 (RFC 2104, FIPS 180-4) for the affinity cookie's short messages, with the key's
 * inner and outer states computed once, as RFC 2104 §4 suggests: signing a 33-byte cookie body
 * is then two SHA-256 block compressions. Node's crypto cannot start a hash from a saved state,
 * so the compression is here, in JavaScript (sha256-compress.ts). Under a flood of new sessions
 * (one cookie signed per request) the two one-shot `crypto.hash` calls this replaces cost ~6 µs
 * per cookie in lb's request path, most of it call overhead; this costs ~0.9 µs, two
 * compressions of ~440 ns. The inner digest goes to the outer block as words, never as bytes.
 * Constant time: no branch or table index depends on the key or message. Same output as
 * `createHmac('sha256', key)` (tested on random keys and messages).
 */
const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

export class HmacSha256 {
  /** States after compressing K ⊕ ipad and K ⊕ opad (one block each). */
  readonly #innerStart: Int32Array;
  readonly #outerStart: Int32Array;
  readonly #state = new Int32Array(8);
  /** The block being compressed, as 16 big-endian words. */
  readonly #w = new Int32Array(16);
  /** The outer block: the inner digest (words 0..7), then the padding of a 64 + 32-byte message, which never changes. */
  readonly #outer = new Int32Array(16);
  readonly #max: number;

  /** `maxMessage`: the longest message signed, in bytes (under 2^29 - 64: the padding holds the length in bits in 32 bits). */
  constructor(secret: string | Buffer, maxMessage: number) {
    if (!(Number.isInteger(maxMessage) && maxMessage >= 0 && maxMessage < 2 ** 29 - 64)) throw new RangeError(`maxMessage ${maxMessage}: a whole number of bytes under 2^29 - 64`);
    let key = Buffer.from(secret);
    if (key.length > 64) key = createHash('sha256').update(key).digest(); // RFC 2104 §2: hash long keys
    this.#max = maxMessage;
    const pad = Buffer.alloc(64);
    const start = (x: number): Int32Array => {
      for (let i = 0; i < 64; i++) pad[i] = (i < key.length ? key[i] : 0) ^ x;
      for (let i = 0; i < 16; i++) this.#w[i] = pad.readInt32BE(i * 4);
      const s = new Int32Array(8);
      compress(IV, this.#w, s);
      return s;
    };
    this.#innerStart = start(0x36);
    this.#outerStart = start(0x5c);
    this.#outer[8] = 0x80000000 | 0;
    this.#outer[15] = 96 * 8;
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
    const w = this.#w;
    // Inner: H((K ⊕ ipad) ‖ msg), the key block already compressed. The message is padded with
    // 0x80, zeros, and its length in bits in the last word (the word before it stays zero: the
    // length is < 2^32). Which bytes are message or padding depends only on the length.
    const end = Math.ceil((n + 9) / 64) * 64;
    let from = this.#innerStart;
    for (let off = 0; off < end; off += 64) {
      // The block's whole words of message, the word holding its end (with the 0x80 after it),
      // then zeros. Which is which depends only on the length.
      const whole = Math.min(16, Math.max(0, (n - off) >> 2));
      let i = 0;
      for (let p = off; i < whole; i++, p += 4) w[i] = (msg[p] << 24) | (msg[p + 1] << 16) | (msg[p + 2] << 8) | msg[p + 3];
      if (i < 16 && off + i * 4 <= n) {
        let v = 0;
        for (let j = off + i * 4, last = j + 4; j < last; j++) v = (v << 8) | (j < n ? msg[j] : j === n ? 0x80 : 0);
        w[i++] = v;
      }
      for (; i < 16; i++) w[i] = 0;
      if (off + 64 === end) w[15] = (64 + n) * 8;
      compress(from, w, s);
      from = s;
    }
    // Outer: H((K ⊕ opad) ‖ inner), the inner digest's words straight into the outer block.
    const outer = this.#outer;
    for (let i = 0; i < 8; i++) outer[i] = s[i];
    compress(this.#outerStart, outer, s);
    for (let i = 0; i < outLength; i++) out[at + i] = s[i >> 2] >>> (24 - 8 * (i & 3));
  }
}
