import { createHash } from 'node:crypto';

/**
 * HMAC-SHA256 (RFC 2104, FIPS 180-4) for the affinity cookie's short messages, with the key's
 * inner and outer states computed once, as RFC 2104 §4 suggests: signing a 33-byte cookie body
 * is then two SHA-256 block compressions. Node's crypto cannot start a hash from a saved state,
 * so the compression is here, in JavaScript. Under a flood of new sessions (one cookie signed
 * per request) the two one-shot `crypto.hash` calls this replaces cost ~6 µs per cookie in
 * lb's request path, most of it call overhead; this costs ~1.8 µs. Only 32-bit add, rotate, and,
 * or, xor: no branch or table index depends on the key or message (constant time). Same output as
 * `createHmac('sha256', key)` (tested on random keys and messages).
 */
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

/**
 * One SHA-256 compression of the 64-byte block at `bytes[at..at+64]` into `state`. `w` is scratch
 * (16 words): the message schedule is computed as the rounds need it, in place (~25 % faster
 * than expanding all 64 words first).
 */
function compress(state: Int32Array, bytes: Uint8Array, at: number, w: Int32Array): void {
  for (let i = 0; i < 16; i++, at += 4) w[i] = (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let e = state[4];
  let f = state[5];
  let g = state[6];
  let h = state[7];
  for (let i = 0; i < 64; i++) {
    let wi: number;
    if (i < 16) wi = w[i];
    else {
      const x = w[(i - 15) & 15];
      const y = w[(i - 2) & 15];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      wi = (w[i & 15] + s0 + w[(i - 7) & 15] + s1) | 0;
      w[i & 15] = wi;
    }
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + (g ^ (e & (f ^ g))) + K[i] + wi) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) | (c & (a | b)))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

export class HmacSha256 {
  /** States after compressing K ⊕ ipad and K ⊕ opad (one block each). */
  readonly #innerStart: Int32Array;
  readonly #outerStart: Int32Array;
  readonly #state = new Int32Array(8);
  readonly #w = new Int32Array(16);
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
      const s = new Int32Array(IV);
      compress(s, pad, 0, this.#w);
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
    const w = this.#w;
    // Inner: H((K ⊕ ipad) ‖ msg), the key block already compressed.
    s.set(this.#innerStart);
    const block = this.#block;
    const blocks = Math.ceil((n + 9) / 64);
    block.fill(0, 0, blocks * 64);
    for (let i = 0; i < n; i++) block[i] = msg[i];
    block[n] = 0x80;
    const bits = (64 + n) * 8; // < 2^32 for any message this class accepts
    const end = blocks * 64;
    block[end - 4] = bits >>> 24;
    block[end - 3] = (bits >>> 16) & 0xff;
    block[end - 2] = (bits >>> 8) & 0xff;
    block[end - 1] = bits & 0xff;
    for (let off = 0; off < end; off += 64) compress(s, block, off, w);
    // Outer: H((K ⊕ opad) ‖ inner).
    const ob = this.#outerBlock;
    for (let i = 0; i < 8; i++) {
      const v = s[i];
      ob[i * 4] = v >>> 24;
      ob[i * 4 + 1] = (v >>> 16) & 0xff;
      ob[i * 4 + 2] = (v >>> 8) & 0xff;
      ob[i * 4 + 3] = v & 0xff;
    }
    s.set(this.#outerStart);
    compress(s, ob, 0, w);
    for (let i = 0; i < outLength; i++) out[at + i] = s[i >> 2] >>> (24 - 8 * (i & 3));
  }
}
