import { describe, expect, it } from 'vitest';
import { CookieCodec } from '../src/affinity/cookie-codec.js';
import { readCookie, withoutCookie } from '../src/affinity/cookie-header.js';

const limits = { maxIdle: 30 * 60_000, maxLife: 12 * 3600_000 };
const T0 = 1_700_000_000_000;

describe('signed affinity cookie', () => {
  const codec = new CookieCodec(['s3cret-one']);
  const value = codec.encode({ backendId: 'node-3', issuedAt: T0, lastSeen: T0 });

  it('round-trips and names the backend only by an opaque token', () => {
    const d = codec.decode(value, T0 + 1000, limits);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.claims.token).toBe(codec.tokenFor('node-3'));
    expect(Buffer.from(value, 'base64url').toString('latin1')).not.toContain('node-3');
    expect(value).toMatch(/^[A-Za-z0-9_-]{66}$/);
  });

  it('gives every new session its own id', () => {
    const a = codec.decode(codec.encode({ backendId: 'n', issuedAt: T0, lastSeen: T0 }), T0, limits);
    const b = codec.decode(codec.encode({ backendId: 'n', issuedAt: T0, lastSeen: T0 }), T0, limits);
    expect(a.ok && b.ok && a.claims.sessionId !== b.claims.sessionId).toBe(true);
  });

  const flip = (v: string, i: number): string => {
    const buf = Buffer.from(v, 'base64url');
    buf[i] ^= 1;
    return buf.toString('base64url');
  };

  it.each([
    { name: 'empty', v: '', now: T0, reason: 'malformed' },
    { name: 'garbage', v: 'not-a-cookie', now: T0, reason: 'malformed' },
    { name: 'right length, bad base64', v: '!'.repeat(66), now: T0, reason: 'malformed' },
    { name: 'tampered backend token', v: flip(value, 6), now: T0, reason: 'bad-signature' },
    { name: 'tampered last-seen', v: flip(value, 32), now: T0, reason: 'bad-signature' },
    { name: 'tampered mac', v: flip(value, 40), now: T0, reason: 'bad-signature' },
    { name: 'foreign key', v: new CookieCodec(['other']).encode({ backendId: 'node-3', issuedAt: T0, lastSeen: T0 }), now: T0, reason: 'unknown-key' },
    { name: 'idle past maxIdle', v: value, now: T0 + limits.maxIdle + 1000, reason: 'expired' },
    {
      name: 'older than maxLife though recently seen',
      v: codec.encode({ backendId: 'node-3', issuedAt: T0, lastSeen: T0 + limits.maxLife }),
      now: T0 + limits.maxLife + 2000,
      reason: 'expired',
    },
  ])('rejects $name as $reason', ({ v, now, reason }) => {
    expect(codec.decode(v, now, limits)).toMatchObject({ ok: false, reason });
  });

  it('an authentic cookie idle past maxIdle still carries its claims, for sessions held by a WebSocket', () => {
    const d = codec.decode(value, T0 + limits.maxIdle + 1000, limits);
    expect(d.ok).toBe(false);
    const fresh = codec.decode(value, T0, limits);
    expect(fresh.ok && !d.ok && d.idleClaims).toEqual(fresh.ok && fresh.claims);
    expect(codec.decode(flip(value, 40), T0 + limits.maxIdle + 1000, limits)).toEqual({ ok: false, reason: 'bad-signature' });
  });

  it('rotates keys: the first signs, all verify', () => {
    const old = new CookieCodec(['old-key']);
    const rotated = new CookieCodec(['new-key', 'old-key']);
    const legacy = old.encode({ backendId: 'node-1', issuedAt: T0, lastSeen: T0 });
    const d = rotated.decode(legacy, T0, limits);
    expect(d.ok && d.claims.token === rotated.tokenFor('node-1', d.claims.keyId)).toBe(true);
    const fresh = rotated.encode({ backendId: 'node-1', issuedAt: T0, lastSeen: T0 });
    expect(old.decode(fresh, T0, limits)).toEqual({ ok: false, reason: 'unknown-key' });
  });
});

describe('cookie header helpers', () => {
  it.each([
    { h: 'a=1; lb_affinity=XYZ; b=2', v: 'XYZ', rest: 'a=1; b=2' },
    { h: 'lb_affinity=XYZ', v: 'XYZ', rest: undefined },
    { h: 'x_lb_affinity=1; b=2', v: undefined, rest: 'x_lb_affinity=1; b=2' },
    { h: 'a=1;lb_affinity=;b', v: '', rest: 'a=1; b' },
  ])('$h', ({ h, v, rest }) => {
    expect(readCookie(h, 'lb_affinity')).toBe(v);
    expect(withoutCookie(h, 'lb_affinity')).toBe(rest);
  });
});

describe('SessionTable', () => {
  it('stays bounded under a flood of new sessions: the oldest are forgotten, held ones kept', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const t = new SessionTable(() => 0, 100);
    const release = t.hold('held', 'n1', 1000);
    for (let i = 0; i < 1000; i++) t.touch(`s${i}`, i % 2 ? 'n1' : 'n2', 10_000);
    expect(t.size).toBe(100);
    expect(t.count('n1') + t.count('n2')).toBe(100);
    expect(t.isLive('held', 'n1')).toBe(true);
    expect(t.isLive('s999', 'n1')).toBe(true);
    expect(t.isLive('s0', 'n2')).toBe(false);
    release();
  });

  it('moves a re-pinned session between backends, keeps a held one past its expiry, expires the rest on sweep', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 1_000_000;
    const t = new SessionTable(() => now);
    t.touch('a', 'n1', now + 10_000, null);
    t.touch('b', 'n1', now + 10_000, null);
    t.touch('a', 'n2', now + 10_000, 'n1'); // re-pinned, origin known
    t.touch('b', 'n3', now + 10_000); // origin unknown (fleet, cluster): found by search
    expect([t.count('n1'), t.count('n2'), t.count('n3'), t.size]).toEqual([0, 1, 1, 2]);
    const release = t.hold('a', 'n2', 5_000);
    expect(t.held()).toEqual([['a', 'n2']]);
    now += 60_000;
    t.sweep();
    expect([t.isLive('a', 'n2'), t.isLive('b', 'n3'), t.size]).toEqual([true, false, 1]); // held survives
    release();
    expect(t.isLive('a', 'n2')).toBe(true); // idles out from now on…
    now += 6_000;
    t.sweep();
    expect([t.isLive('a', 'n2'), t.size, t.held()]).toEqual([false, 0, []]); // …and is gone
  });
});

describe('HmacSha256', () => {
  it('equals createHmac for keys shorter than, equal to and longer than the 64-byte block, and messages across block boundaries', async () => {
    const { createHmac, randomBytes } = await import('node:crypto');
    const { HmacSha256 } = await import('../src/util/hmac.js');
    for (const keyLen of [0, 1, 18, 63, 64, 65, 200]) {
      // Text keys (as configured) and binary keys (every byte value, high bits set).
      for (const key of [randomBytes(keyLen).toString('base64').slice(0, keyLen), randomBytes(keyLen)]) {
        const mac = new HmacSha256(key, 200);
        for (const len of [0, 1, 33, 55, 56, 63, 64, 65, 119, 120, 200]) {
          for (let i = 0; i < 10; i++) {
            const msg = randomBytes(len);
            expect(mac.digest(msg).equals(createHmac('sha256', key).update(msg).digest()), `key ${keyLen}, message ${len}`).toBe(true);
          }
        }
      }
    }
    expect(() => new HmacSha256('k', 4).digest(Buffer.alloc(5))).toThrow(RangeError);
  });
});
