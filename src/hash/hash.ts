/**
 * Fast non-cryptographic hashing for hot paths (affinity `mode: hash`).
 *
 * Algorithm: MurmurHash3 x86_32 (Austin Appleby, public domain) over the UTF-8
 * bytes of the key. Pure TypeScript, no native dependencies, output identical
 * to the reference implementation (see the test vectors in test/hash.test.ts).
 *
 * Strings that are pure ASCII (the usual case: cookies, IPs, header values) are
 * hashed straight from `charCodeAt` without encoding; anything else is encoded
 * to UTF-8 into a reused scratch buffer first, so `hashKey(s)` always equals
 * `hashBytes(Buffer.from(s, 'utf8'))`.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** MurmurHash3 finaliser: a good 32-bit -> 32-bit bijective mixer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3's per-block scramble of k. */
function scramble(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/** One 4-byte block folded into h. */
function mixBlock(h: number, k: number): number {
  h ^= scramble(k);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3 x86_32 of raw bytes. Returns an unsigned 32-bit integer. */
export function hashBytes(buf: Uint8Array, seed = 0, len = buf.length): number {
  let h = seed | 0;
  const nblocks = len & ~3;
  let i = 0;
  for (; i < nblocks; i += 4) {
    h = mixBlock(h, buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24));
  }
  let k = 0;
  switch (len & 3) {
    case 3:
      k ^= buf[i + 2] << 16;
    // falls through
    case 2:
      k ^= buf[i + 1] << 8;
    // falls through
    case 1:
      k ^= buf[i];
      h ^= scramble(k);
  }
  h ^= len;
  return fmix32(h);
}

let scratch = new Uint8Array(256);
const encoder = new TextEncoder();

function hashNonAscii(key: string, seed: number): number {
  const need = key.length * 3;
  if (scratch.length < need) scratch = new Uint8Array(Math.max(need, scratch.length * 2));
  const { written } = encoder.encodeInto(key, scratch);
  return hashBytes(scratch, seed, written);
}

/** MurmurHash3 x86_32 of the UTF-8 encoding of `key` with the given seed (uint32). */
export function hashKey2(key: string, seed: number): number {
  const len = key.length;
  let h = seed | 0;
  const nblocks = len & ~3;
  let i = 0;
  for (; i < nblocks; i += 4) {
    const c0 = key.charCodeAt(i);
    const c1 = key.charCodeAt(i + 1);
    const c2 = key.charCodeAt(i + 2);
    const c3 = key.charCodeAt(i + 3);
    if ((c0 | c1 | c2 | c3) > 0x7f) return hashNonAscii(key, seed);
    h = mixBlock(h, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
  }
  const rem = len & 3;
  if (rem !== 0) {
    let k = 0;
    let or = 0;
    switch (rem) {
      case 3: {
        const c = key.charCodeAt(i + 2);
        or |= c;
        k ^= c << 16;
      }
      // falls through
      case 2: {
        const c = key.charCodeAt(i + 1);
        or |= c;
        k ^= c << 8;
      }
      // falls through
      case 1: {
        const c = key.charCodeAt(i);
        or |= c;
        k ^= c;
      }
    }
    if (or > 0x7f) return hashNonAscii(key, seed);
    h ^= scramble(k);
  }
  h ^= len;
  return fmix32(h);
}

/** MurmurHash3 x86_32 (seed 0) of the UTF-8 encoding of `key` (uint32). */
export function hashKey(key: string): number {
  return hashKey2(key, 0);
}
