import { describe, expect, it } from 'vitest';
import { newRequestId, requestIdOf } from '../src/proxy/headers.js';

/** Generated request ids (src/proxy/headers.ts): UUID-shaped, never repeated, no visible count. */
describe('request ids', () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('are RFC 9562 version-8 UUIDs, all different over 300,000 requests', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 300_000; i++) seen.add(newRequestId());
    expect(seen.size).toBe(300_000);
    for (const id of [...seen].slice(0, 1000)) expect(id).toMatch(UUID);
  });

  it('do not count up: consecutive ids differ in most of their last 12 digits', () => {
    const tails = Array.from({ length: 200 }, () => newRequestId().slice(24));
    let differing = 0;
    for (let i = 1; i < tails.length; i++) {
      for (let d = 0; d < 12; d++) if (tails[i][d] !== tails[i - 1][d]) differing++;
    }
    // A plain counter changes ~1.07 of 12 digits per step; a permutation ~11.
    expect(differing / (tails.length - 1)).toBeGreaterThan(8);
  });

  it('keep a sane incoming id and replace anything else', () => {
    expect(requestIdOf('abc-123')).toBe('abc-123');
    expect(requestIdOf(['first', 'second'])).toBe('first');
    expect(requestIdOf('has space')).toMatch(UUID);
    expect(requestIdOf('x'.repeat(201))).toMatch(UUID);
    expect(requestIdOf(undefined)).toMatch(UUID);
  });
});
