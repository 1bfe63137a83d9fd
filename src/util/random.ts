import { randomFillSync } from 'node:crypto';

/**
 * Random bytes from a pooled buffer refilled 4 KiB at a time: one getrandom call per ~340
 * session ids instead of one each (profiling showed randomFillSync at 4 % of the request path).
 * The bytes are still from the kernel CSPRNG; each is handed out once.
 */
const POOL = Buffer.allocUnsafe(4096);
let offset = POOL.length;

export function randomChunk(n: number): Buffer {
  if (n > POOL.length) return randomFillSync(Buffer.allocUnsafe(n));
  if (offset + n > POOL.length) {
    randomFillSync(POOL);
    offset = 0;
  }
  const out = Buffer.from(POOL.subarray(offset, offset + n));
  offset += n;
  return out;
}
