import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CookieCodec, SESSION_AT } from '../src/affinity/cookie-codec.js';
import { readCookie, serializeSetCookie, withoutCookie } from '../src/affinity/cookie-header.js';
import { CookieAffinity } from '../src/affinity/cookie.js';
import type { Decision, RequestFacts } from '../src/affinity/types.js';
import type { PoolView } from '../src/balancer/registry.js';
import type { Backend } from '../src/balancer/types.js';

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

  it('writes each backend its own token, times past 2^31 seconds whole, and a MAC that createHmac agrees with', () => {
    // Backends minted in turn: a cached prefix must belong to its backend.
    for (const id of ['node-1', 'node-2', 'node-1', 'node-3', 'node-2']) {
      const d = codec.decode(codec.mint(id, T0).value, T0, limits);
      expect(d.ok && d.claims.token).toBe(codec.tokenFor(id));
    }
    // Seconds from 2^31 (2038) to just under 2^32 (2106) keep every bit.
    for (const sec of [2 ** 31, 2 ** 31 + 0x01020304, 2 ** 32 - 1]) {
      const v = codec.encode({ backendId: 'node-3', issuedAt: sec * 1000, lastSeen: sec * 1000 });
      const b = Buffer.from(v, 'base64url');
      expect([b.readUInt32BE(25), b.readUInt32BE(29)]).toEqual([sec, sec]);
      expect(codec.decode(v, sec * 1000, limits)).toMatchObject({ ok: true, claims: { issuedAt: sec * 1000, lastSeen: sec * 1000 } });
      // Signed with HMAC-SHA256 of the secret over the first 33 bytes (not only verified by the same code that signs).
      expect(b.subarray(33).equals(createHmac('sha256', 's3cret-one').update(b.subarray(0, 33)).digest().subarray(0, 16))).toBe(true);
    }
  });

  it('gives every new session its own id', () => {
    const a = codec.decode(codec.encode({ backendId: 'n', issuedAt: T0, lastSeen: T0 }), T0, limits);
    const b = codec.decode(codec.encode({ backendId: 'n', issuedAt: T0, lastSeen: T0 }), T0, limits);
    expect(a.ok && b.ok && a.claims.sessionId !== b.claims.sessionId).toBe(true);
  });

  it('mints a new session: the id it returns is the one the cookie carries, signed like encode signs it', () => {
    const m = codec.mint('node-3', T0 + 1500);
    // Until the next cookie is built, mintedBytes carry the id at SESSION_AT (what the session table counts).
    expect(Buffer.from(codec.mintedBytes).toString('base64url', SESSION_AT, SESSION_AT + 12)).toBe(m.sessionId);
    const d = codec.decode(m.value, T0 + 2000, limits);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.claims).toMatchObject({ sessionId: m.sessionId, token: codec.tokenFor('node-3'), issuedAt: T0 + 1000, lastSeen: T0 + 1000 });
    expect(m.sessionId).toMatch(/^[A-Za-z0-9_-]{16}$/);
    // The same claims through encode give the same cookie byte for byte.
    expect(codec.encode({ backendId: 'node-3', sessionId: m.sessionId, issuedAt: T0 + 1500, lastSeen: T0 + 1500 })).toBe(m.value);
    expect(codec.mint('node-3', T0).sessionId).not.toBe(m.sessionId);
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
    // The other cookies go on as the client wrote them; a removed pair takes its separator along.
    { h: 'a=1;lb_affinity=;b', v: '', rest: 'a=1;b' },
    { h: 'a=1; lb_affinity=XYZ', v: 'XYZ', rest: 'a=1' },
    { h: 'lb_affinity=XYZ; b=2', v: 'XYZ', rest: 'b=2' },
    { h: 'lb_affinity=X; a=1; lb_affinity=Y', v: 'X', rest: 'a=1' },
    { h: 'a=1; lb_affinity=X; lb_affinity=Y', v: 'X', rest: 'a=1' },
    { h: 'lb_affinity=X; lb_affinity=Y', v: 'X', rest: undefined },
    // Only a pair's own name counts: not a value holding it, nor a longer name starting with it.
    { h: 'a=lb_affinity=1; lb_affinity2=3', v: undefined, rest: 'a=lb_affinity=1; lb_affinity2=3' },
    { h: 'a=lb_affinity; lb_affinity2=3; lb_affinity=Z', v: 'Z', rest: 'a=lb_affinity; lb_affinity2=3' },
    { h: 'lb_affinity; a=1', v: undefined, rest: 'lb_affinity; a=1' },
    // OWS (space, tab) around names, `=` and values.
    { h: 'a=1;\tlb_affinity = XYZ ;b=2', v: 'XYZ', rest: 'a=1;\tb=2' },
    { h: ' lb_affinity=XYZ ', v: 'XYZ', rest: undefined },
    { h: '', v: undefined, rest: '' },
    // Separators a removed pair leaves at either end go with it: no Cookie field of separators alone.
    { h: 'lb_affinity=X;;', v: 'X', rest: undefined },
    { h: ';lb_affinity=X; ;', v: 'X', rest: undefined },
    { h: 'a=1; lb_affinity=X;;', v: 'X', rest: 'a=1' },
    { h: '; a=1; lb_affinity=X', v: 'X', rest: 'a=1' },
  ])('$h', ({ h, v, rest }) => {
    expect(readCookie(h, 'lb_affinity')).toBe(v);
    expect(withoutCookie(h, 'lb_affinity')).toBe(rest);
  });
});

describe('cookie header helpers against splitting into pairs', () => {
  /** The reading the helpers must agree with: split at `;`, OWS trimmed, the name before the first `=`. */
  const pairs = (h: string): Array<{ name: string | undefined; value: string; text: string }> =>
    h
      .split(';')
      .map((p) => p.replace(/^[ \t]+|[ \t]+$/g, ''))
      .filter((p) => p !== '')
      .map((text) => {
        const eq = text.indexOf('=');
        return eq === -1 ? { name: undefined, value: '', text } : { name: text.slice(0, eq).replace(/[ \t]+$/, ''), value: text.slice(eq + 1).replace(/^[ \t]+/, ''), text };
      });

  it('reads the first pair named lb and removes every one of them, leaving the other non-empty pairs as they were (5,000 random headers)', () => {
    const pieces = ['lb', 'lb', 'lb2', 'xlb', 'a', 'X', '=', '=', ';', ';', ' ', '\t'];
    let seed = 12345;
    const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    for (let k = 0; k < 5000; k++) {
      let h = '';
      for (let n = rand(12); n >= 0; n--) h += pieces[rand(pieces.length)];
      const all = pairs(h);
      const mine = all.find((p) => p.name === 'lb');
      expect(readCookie(h, 'lb'), JSON.stringify(h)).toBe(mine?.value);
      const rest = withoutCookie(h, 'lb');
      if (!mine) expect(rest).toBe(h);
      else {
        expect(pairs(rest ?? '').map((p) => p.text), JSON.stringify(h)).toEqual(all.filter((p) => p.name !== 'lb').map((p) => p.text));
        // Nothing but pairs of other cookies, and no separator at either end.
        if (all.every((p) => p.name === 'lb')) expect(rest, JSON.stringify(h)).toBeUndefined();
        else expect(rest, JSON.stringify(h)).not.toMatch(/^[; \t]|[; \t]$/);
      }
    }
  });
});

describe('SessionTable', () => {
  /** A session id as lb mints it: 12 bytes, 16 base64url characters. */
  const sid = (n: number): string => Buffer.from(`sess${String(n).padStart(8, '0')}`).toString('base64url');
  /** `n` random session ids, as id(i): 12 random bytes each, made up front in one buffer. */
  const randomIds = (n: number): ((i: number) => string) => {
    const bytes = randomBytes(12 * n);
    return (i) => bytes.toString('base64url', i * 12, i * 12 + 12);
  };

  it('stays bounded under a flood of new sessions: the first to expire are forgotten, held ones kept', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const t = new SessionTable(() => 0, 100);
    const release = t.hold(sid(-1), 'n1', 1000);
    // Session i expires at i + 1 seconds: later sessions are the more recently active.
    for (let i = 0; i < 1000; i++) t.touch(sid(i), i % 2 ? 'n1' : 'n2', 1000 * (i + 1));
    expect(t.size).toBe(100);
    expect(t.count('n1') + t.count('n2')).toBe(100);
    expect(t.isLive(sid(-1), 'n1')).toBe(true);
    expect(t.isLive(sid(999), 'n1')).toBe(true);
    expect(t.isLive(sid(0), 'n2')).toBe(false);
    // Sampled eviction: what is kept is mostly the recent end of the flood.
    let recent = 0;
    for (let i = 900; i < 1000; i++) if (t.isLive(sid(i), i % 2 ? 'n1' : 'n2')) recent++;
    expect(recent).toBeGreaterThan(60);
    release();
  });

  it('counts an added session (a minted one, given as its bytes) as the same entry as its id given as characters', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 1_000_000;
    const t = new SessionTable(() => now, 1_000_000, 8); // small: the ids below grow it and wrap
    const bytes = randomBytes(12 * 400);
    const id = (i: number): string => bytes.toString('base64url', i * 12, i * 12 + 12);
    for (let i = 0; i < 400; i++) t.add(id(i), bytes, i * 12, i % 2 ? 'n1' : 'n2', now + 60_000);
    expect([t.size, t.count('n1'), t.count('n2')]).toEqual([400, 200, 200]);
    // Found by their characters, where decoding them would place them:
    for (let i = 0; i < 400; i++) expect(t.isLive(id(i), i % 2 ? 'n1' : 'n2'), `id ${i}`).toBe(true);
    // Touched again by characters: still one entry each; added again on another backend: moved, not doubled.
    for (let i = 0; i < 400; i++) t.touch(id(i), i % 2 ? 'n1' : 'n2', now + 120_000);
    t.add(id(0), bytes, 0, 'n1', now + 120_000);
    expect([t.size, t.count('n1'), t.count('n2')]).toEqual([400, 201, 199]);
    // The expiry a touch by characters gave is the one kept: gone after it, not after the first.
    now += 90_000;
    t.sweep();
    expect(t.size).toBe(400);
    now += 60_000;
    t.sweep();
    expect(t.size).toBe(0);
  });

  it('puts added sessions in before anything reads or changes the table, and at the end of the turn without a read', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const { setImmediate: nextTurn } = await import('node:timers/promises');
    const now = 1_000_000;
    const bytes = randomBytes(12 * 8);
    const id = (i: number): string => bytes.toString('base64url', i * 12, i * 12 + 12);
    const fresh = () => {
      const t = new SessionTable(() => now);
      t.add(id(0), bytes, 0, 'n1', now + 60_000);
      t.add(id(1), bytes, 12, 'n2', now + 60_000);
      return t;
    };
    // Every method that reads or changes the table puts them in first (nothing waits for the turn to end).
    const ways: Array<[string, (t: InstanceType<typeof SessionTable>) => unknown]> = [
      ['count', (t) => t.count('n1')], ['size', (t) => t.size], ['isLive', (t) => t.isLive(id(5), 'n1')],
      ['touch', (t) => t.touch(id(5), 'n1', now + 1000)], ['hold', (t) => t.hold(id(5), 'n1', 1000)], ['held', (t) => t.held()],
      ['forgetBackend', (t) => t.forgetBackend('n3')], ['sweep', (t) => t.sweep()], ['sweep part', (t) => t.sweep(0.1)],
      ['generation', (t) => t.generation], ['slots', (t) => t.slots], ['moving', (t) => t.moving],
    ];
    for (const [name, look] of ways) {
      const t = fresh();
      expect(t.pending, name).toBe(2);
      look(t);
      expect(t.pending, name).toBe(0);
    }
    // ...before it decodes an id of its own: settling overwrites the key of the id being decoded.
    {
      const t = new SessionTable(() => now);
      t.touch(id(0), 'n1', now + 60_000);
      t.add(id(1), bytes, 12, 'n2', now + 60_000);
      expect(t.isLive(id(0), 'n1')).toBe(true);
      t.add(id(2), bytes, 24, 'n2', now + 60_000);
      expect(t.held()).toEqual([]);
      const release = t.hold(id(0), 'n1', 1000);
      t.add(id(3), bytes, 36, 'n2', now + 60_000);
      expect(t.held()).toEqual([[id(0), 'n1']]);
      t.add(id(4), bytes, 48, 'n2', now + 60_000);
      release(); // id(0)'s hold ends and it idles out 1 s later (id(4) queued when the release looks it up)
      t.add(id(5), bytes, 60, 'n2', now + 60_000);
      expect(t.held()).toEqual([]);
      t.add(id(6), bytes, 72, 'n2', now + 60_000);
      t.forgetBackend('n2');
      expect([t.size, t.count('n1'), t.count('n2')]).toEqual([1, 1, 0]);
    }
    expect([fresh().count('n1'), fresh().count('n2'), fresh().isLive(id(1), 'n2')]).toEqual([1, 1, true]);
    let t = fresh();
    const release = t.hold(id(0), 'n1', 1000); // held: the added entry, not a second one
    expect([t.size, t.held()]).toEqual([2, [[id(0), 'n1']]]);
    t.add(id(2), bytes, 24, 'n1', now + 60_000);
    release(); // the release puts the new one in before it looks
    expect([t.pending, t.held(), t.size]).toEqual([0, [], 3]);
    t = fresh();
    t.touch(id(1), 'n1', now + 60_000); // re-pinned after its add: moved, not doubled
    expect([t.count('n1'), t.count('n2'), t.size]).toEqual([2, 0, 2]);
    t = fresh();
    t.forgetBackend('n2');
    expect([t.size, t.count('n1'), t.isLive(id(1), 'n2')]).toEqual([1, 1, false]);
    // With no read at all, they are in the table once the turn ends: one immediate for the turn,
    // whether or not a read emptied the queue in between.
    const u = new SessionTable(() => now);
    const scheduled = (await import('node:timers')).setImmediate;
    let immediates = 0;
    const counting = ((...args: Parameters<typeof setImmediate>) => (immediates++, scheduled(...args))) as typeof setImmediate;
    globalThis.setImmediate = counting;
    try {
      for (let i = 0; i < 8; i++) {
        u.add(id(i), bytes, i * 12, 'n1', now + 60_000);
        if (i === 3) expect(u.generation).toBe(0); // a read in the middle
      }
    } finally {
      globalThis.setImmediate = scheduled;
    }
    expect([u.pending, immediates]).toEqual([4, 1]);
    await nextTurn();
    expect(u.pending).toBe(0);
    expect([u.size, u.count('n1')]).toEqual([8, 8]);
  });

  it('moves a re-pinned session between backends, keeps a held one past its expiry, expires the rest on sweep', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 1_000_000;
    const t = new SessionTable(() => now);
    const [a, b] = [sid(1), sid(2)];
    t.touch(a, 'n1', now + 10_000);
    t.touch(b, 'n1', now + 10_000);
    t.touch(a, 'n2', now + 10_000); // re-pinned
    t.touch(b, 'n3', now + 10_000);
    expect([t.count('n1'), t.count('n2'), t.count('n3'), t.size]).toEqual([0, 1, 1, 2]);
    const release = t.hold(a, 'n2', 5_000);
    expect(t.held()).toEqual([[a, 'n2']]);
    now += 60_000;
    t.sweep();
    expect([t.isLive(a, 'n2'), t.isLive(b, 'n3'), t.size]).toEqual([true, false, 1]); // held survives
    release();
    expect(t.isLive(a, 'n2')).toBe(true); // idles out from now on…
    now += 6_000;
    t.sweep();
    expect([t.isLive(a, 'n2'), t.size, t.held()]).toEqual([false, 0, []]); // …and is gone
  });

  it.each([
    { ids: 3000, slots: 1024, part: 1 },
    { ids: 3000, slots: 1024, part: 0.15 }, // swept in parts (the table reaches 8,192 slots: 1,229 a call)
    { ids: 40, slots: 8, part: 1 }, // a small table: probe runs wrap around its end
  ])('agrees with a plain Map through growth, re-pins, sweeps and forgotten backends ($ids ids, sweeps of $part)', async ({ ids: count, slots, part }) => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const { randomBytes } = await import('node:crypto');
    let now = 0;
    const t = new SessionTable(() => now, 1_000_000, slots);
    const model = new Map<string, { backend: string; exp: number }>();
    const ids = Array.from({ length: count }, () => randomBytes(12).toString('base64url'));
    let seed = 7;
    const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    for (let step = 0; step < (count <= 40 ? 10_000 : 40_000); step++) {
      const id = ids[rand(ids.length)];
      const backend = `n${rand(4)}`;
      const exp = now + 1000 * (1 + rand(60));
      t.touch(id, backend, exp);
      const m = model.get(id);
      if (m && m.backend === backend) m.exp = Math.max(m.exp, exp);
      else model.set(id, { backend, exp });
      if (step % 1000 === 999) {
        now += 5_000;
        let calls = 1;
        while (!t.sweep(part)) calls++; // a pass completed
        if (part < 1 && t.slots >= 8192) expect(calls).toBeGreaterThan(1);
        for (const [k, v] of model) if (Math.ceil(v.exp / 1000) <= now / 1000) model.delete(k);
      }
      if (step === 7_000) {
        t.forgetBackend('n2');
        for (const [k, v] of model) if (v.backend === 'n2') model.delete(k);
      }
      // The small table is compared after every step: a lost or misplaced entry is caught where it happens.
      if (count <= 40) {
        let bad = t.size === model.size ? '' : `size ${t.size} ≠ ${model.size}`;
        for (const k of ids) {
          const m = model.get(k);
          if (t.isLive(k, m?.backend ?? 'none') !== (m !== undefined && m.exp > now)) bad += ` ${k} on ${m?.backend}`;
        }
        if (bad) expect(bad, `step ${step}`).toBe('');
      }
    }
    expect(t.size).toBe(model.size);
    for (const b of ['n0', 'n1', 'n2', 'n3']) expect(t.count(b)).toBe([...model.values()].filter((v) => v.backend === b).length);
    for (const id of ids) {
      const m = model.get(id);
      for (const b of ['n0', 'n1', 'n2', 'n3']) expect(t.isLive(id, b)).toBe(m !== undefined && m.backend === b && m.exp > now);
    }
  });

  it('keeps every entry reachable when a removal shifts a probe run that wraps around the end', async () => {
    const { SessionTable, homeSlot } = await import('../src/affinity/sessions.js');
    const { randomBytes } = await import('node:crypto');
    // 8 slots. Homes 6, 6, 6, 0 fill slots 6, 7, 0, 1; homes 6, 6, 0, 0 fill them too, and there
    // the entries in 0 and 1 must stay when 6 or 7 is freed.
    const at = (slot: number): string => {
      for (;;) {
        const id = randomBytes(12).toString('base64url');
        if (homeSlot(id, 8) === slot) return id;
      }
    };
    for (const [removed, homes] of [0, 1, 2, 3].flatMap((r) => [[r, [6, 6, 6, 0]] as const, [r, [6, 6, 0, 0]] as const])) {
      const ids = homes.map(at);
      const t = new SessionTable(() => 0, 4, 8);
      for (const id of ids) t.touch(id, 'n1', 10_000);
      t.touch(ids[removed], 'n2', 10_000); // a re-pin: removed from its slot, then inserted again
      const where = ids.map((id) => (t.isLive(id, 'n1') ? 'n1' : t.isLive(id, 'n2') ? 'n2' : 'lost'));
      expect(where, `homes ${homes}, re-pinned id ${removed}`).toEqual(ids.map((_, i) => (i === removed ? 'n2' : 'n1')));
      expect([t.size, t.count('n1'), t.count('n2')]).toEqual([4, 3, 1]);
    }
  });

  it('grows with a flood and gives the memory back once the flood has expired', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now);
    const id = randomIds(20_000);
    for (let i = 0; i < 20_000; i++) t.touch(id(i), 'n1', i < 19_990 ? 10_000 : 100_000);
    expect([t.size, t.slots]).toEqual([20_000, 65_536]); // at most half full
    now = 50_000;
    t.sweep();
    expect([t.size, t.count('n1'), t.slots, t.moving]).toEqual([10, 10, 1024, 0]); // back to its initial size, in one go
    for (let i = 19_990; i < 20_000; i++) expect(t.isLive(id(i), 'n1')).toBe(true);
  });

  it('held() lists exactly the sessions open WebSockets hold, through re-pins, releases, forgotten backends and growth', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const now = 0;
    const t = new SessionTable(() => now);
    const releases = [1, 2, 3, 4].map((i) => t.hold(sid(i), `n${i}`, 1000));
    t.hold(sid(1), 'n1', 1000); // a second holder of the same session
    for (let i = 100; i < 3000; i++) t.touch(sid(i), 'n9', 60_000); // the table grows twice meanwhile
    const sorted = (x: Array<[string, string]>): string[] => x.map(([id, b]) => `${id}@${b}`).sort();
    expect(sorted(t.held())).toEqual(sorted([[sid(1), 'n1'], [sid(2), 'n2'], [sid(3), 'n3'], [sid(4), 'n4']]));
    t.touch(sid(2), 'n5', 60_000); // re-pinned: no longer held
    t.forgetBackend('n3');
    releases[3](); // the only holder of 4 lets go
    releases[0](); // one of two holders of 1: still held
    expect(t.held()).toEqual([[sid(1), 'n1']]);
  });

  it("an old WebSocket's release does not end a hold taken after its session moved away and came back", async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now);
    const s = sid(7);
    const first = t.hold(s, 'A', 1000);
    t.touch(s, 'B', 60_000); // re-pinned: the first WebSocket's hold is dropped
    const second = t.hold(s, 'A', 1000); // back on A, held by a new WebSocket
    first(); // the old one closes
    expect(t.held()).toEqual([[s, 'A']]);
    now += 120_000;
    expect(t.isLive(s, 'A')).toBe(true);
    second();
    now += 2_000;
    expect([t.isLive(s, 'A'), t.held()]).toEqual([false, []]);
  });

  it('a sweep in parts looks at a bounded part of the table per call, goes on where it stopped, and shrinks the table when a pass ends', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now);
    const n = 200_000;
    const id = randomIds(n);
    for (let i = 0; i < n; i++) t.touch(id(i), i % 2 ? 'n1' : 'n2', i % 2000 === 0 ? 100_000 : 10_000);
    expect([t.size, t.slots]).toEqual([n, 524_288]);
    now = 50_000;
    expect(t.sweep(1 / 20)).toBe(false);
    const gone = n - t.size;
    expect(gone).toBeGreaterThan(0);
    expect(gone).toBeLessThanOrEqual(Math.ceil(524_288 / 20)); // every look counts: the work is bounded
    let calls = 1;
    while (!t.sweep(1 / 20)) calls++;
    expect(calls).toBeGreaterThanOrEqual(20);
    expect([t.size, t.count('n1') + t.count('n2'), t.slots]).toEqual([100, 100, 1024]); // the pass ended: shrunk
    // …by a move spread over the next sweeps, a twentieth of the old array each.
    expect(t.moving).toBe(524_288);
    let moves = 0;
    while (t.moving > 0) {
      expect(t.sweep(1 / 20)).toBe(false);
      moves++;
      if (moves === 3) for (let i = 0; i < n; i += 2000) expect(t.isLive(id(i), i % 2 ? 'n1' : 'n2')).toBe(true);
    }
    expect(moves).toBe(20);
    for (let i = 0; i < n; i += 2000) expect(t.isLive(id(i), i % 2 ? 'n1' : 'n2')).toBe(true);
    expect([t.size, t.count('n1') + t.count('n2')]).toEqual([100, 100]);
    expect(t.sweep(1 / 20)).toBe(true); // a table of 1,024 slots is swept whole in one call
    // …expired entries included (each removal is a look: a budget of 1,024 looks would stop short).
    for (let i = 0; i < 400; i++) t.touch(id(n - 1 - i), 'n3', 60_000);
    expect(t.slots).toBe(1024);
    now = 70_000;
    expect(t.sweep(0.1)).toBe(true);
    expect([t.count('n3'), t.size]).toEqual([0, 100]);
    expect(t.sweep(Number.NaN)).toBe(true); // not a part: swept whole
  });

  it('grows without moving every entry at once: the old array is emptied 4 slots per new session, and every entry stays reachable meanwhile', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const now = 0;
    const t = new SessionTable(() => now);
    const n = 40_000;
    const id = randomIds(n);
    const backend = (i: number): string => `n${i % 3}`;
    let growths = 0;
    for (let i = 0; i < n; i++) {
      const [slots, moving] = [t.slots, t.moving];
      t.touch(id(i), backend(i), 10_000);
      if (t.slots !== slots) {
        growths++;
        expect([t.slots, t.moving]).toEqual([slots * 2, slots - 4]); // the previous move had ended
        expect(moving).toBe(0);
        // Reachable from either array at the start of the move (and halfway, below; re-pins in either array meanwhile).
        for (let j = 0; j <= i; j += 97) expect(t.isLive(id(j), backend(j))).toBe(true);
      } else if (moving > 0) expect(t.moving).toBe(Math.max(0, moving - 4));
      if (t.moving === t.slots / 4) for (let j = 0; j <= i; j += 97) expect(t.isLive(id(j), backend(j))).toBe(true); // halfway
      if (t.moving > 0 && t.moving % 512 === 0) {
        const j = (i * 7919) % (i + 1);
        t.touch(id(j), 'moved', 10_000); // a re-pin of an entry in either array
        expect([t.isLive(id(j), 'moved'), t.isLive(id(j), backend(j))]).toEqual([true, false]);
        t.touch(id(j), backend(j), 10_000);
      }
    }
    expect(growths).toBe(7); // 1,024 → 131,072 slots
    expect([t.size, t.count('n0') + t.count('n1') + t.count('n2'), t.count('moved')]).toEqual([n, n, 0]);
    for (let j = 0; j < n; j++) if (!t.isLive(id(j), backend(j))) expect.fail(`${j} lost`);
  });

  it("after a shrink, new sessions empty the old array (a step scaled to its size) before the table must grow; forgetBackend mid-move drops only its backend's", async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now);
    const n = 30_000;
    const id = randomIds(2 * n);
    for (let i = 0; i < n; i++) t.touch(id(i), 'n1', i < 200 ? 100_000 : 10_000);
    expect(t.slots).toBe(65_536);
    now = 50_000;
    while (!t.sweep(1 / 20));
    expect([t.size, t.slots, t.moving]).toEqual([200, 1024, 65_536]); // shrunk; the move has just begun
    // A flood before any sweep has moved anything: 312 new sessions make 1,024 slots half full.
    let grewWhileMoving = 0;
    let movedBy = -1;
    for (let i = n; i < n + 400; i++) {
      const [slots, moving] = [t.slots, t.moving];
      t.touch(id(i), 'n2', 100_000);
      if (t.slots !== slots && moving > 0) grewWhileMoving++;
      if (movedBy < 0 && t.moving === 0) movedBy = i - n + 1;
    }
    expect(grewWhileMoving).toBe(0); // at 4 slots a session it would have had 64,288 left to move in one call
    expect(movedBy).toBeLessThanOrEqual(156); // by half of the 312 sessions the 1,024 slots had room for
    expect([t.size, t.slots, t.count('n1'), t.count('n2')]).toEqual([600, 2048, 200, 400]);
    const moving = t.moving;
    expect(moving).toBeGreaterThan(0); // the growth's own move: some of n2's sessions are still in the old array
    t.forgetBackend('n2');
    expect([t.moving, t.size, t.count('n1'), t.count('n2')]).toEqual([moving, 200, 200, 0]); // not finished for it
    for (let i = 0; i < 200; i++) expect(t.isLive(id(i), 'n1')).toBe(true);
    t.touch(id(n + 1200), 'n4', 100_000); // takes over n2's index: none of n2's entries may count for it
    for (let i = n; i < n + 400; i++) expect(t.isLive(id(i), 'n4')).toBe(false);
    expect(t.count('n4')).toBe(1);
    t.sweep();
    expect([t.count('n4'), t.size]).toEqual([1, 201]);
    t.forgetBackend('n4');
    for (let i = n; i < n + 1200; i++) t.touch(id(i), 'n3', 100_000);
    expect(t.moving).toBeGreaterThan(0);
    t.sweep();
    expect([t.moving, t.size, t.count('n3')]).toEqual([0, 1400, 1200]);
  });

  it('a partial sweep during a move drops the expired entries it moves; expiry is exact to the second', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now);
    // 512 sessions fill 1,024 slots to half; the 513th grows the table, and the 512 wait in the old array.
    for (let i = 0; i < 512; i++) t.touch(sid(i), 'n1', i < 256 ? 10_000 : 20_000);
    t.touch(sid(512), 'n2', 10_000);
    expect([t.slots, t.moving]).toEqual([2048, 1020]);
    now = 9_999;
    expect([t.isLive(sid(0), 'n1'), t.isLive(sid(512), 'n2')]).toEqual([true, true]); // sid(0) moved on access
    now = 10_000;
    expect([t.isLive(sid(1), 'n1'), t.isLive(sid(512), 'n2'), t.isLive(sid(300), 'n1')]).toEqual([false, false, true]);
    expect(t.sweep(1 / 20)).toBe(false); // moves a part of the old array (1,024 slots at least: all of it here)…
    expect(t.moving).toBe(0);
    expect(t.size).toBeLessThan(513); // …and drops the expired it moved
    while (!t.sweep(1 / 20));
    expect([t.size, t.count('n1'), t.count('n2')]).toEqual([256, 256, 0]);
    now = 19_999;
    t.sweep();
    expect(t.size).toBe(256);
    now = 20_000;
    t.sweep();
    expect(t.size).toBe(0);
  });

  it('holds, releases and held() reach a session still in the old array', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now);
    const release = t.hold(sid(0), 'n1', 1000);
    const second = t.hold(sid(1), 'n1', 1000);
    for (let i = 2; i < 513; i++) t.touch(sid(i), 'n1', 10_000); // the 513th grows the table
    expect([t.slots, t.moving > 0]).toEqual([2048, true]);
    const sorted = (x: Array<[string, string]>): string[] => x.map(([i, b]) => `${i}@${b}`).sort();
    expect(sorted(t.held())).toEqual(sorted([[sid(0), 'n1'], [sid(1), 'n1']]));
    release();
    expect(t.held()).toEqual([[sid(1), 'n1']]);
    now = 60_000;
    expect([t.isLive(sid(0), 'n1'), t.isLive(sid(1), 'n1'), t.isLive(sid(2), 'n1')]).toEqual([false, true, false]);
    second();
    now = 61_001;
    expect(t.isLive(sid(1), 'n1')).toBe(false);
  });

  it('forgetting a backend whose held session is still in the old array ends that hold for good', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now);
    t.hold(sid(0), 'A', 1000); // its release is never called: the backend goes
    for (let i = 1; i < 513; i++) t.touch(sid(i), 'B', 10_000); // the 513th grows the table; sid(0) stays in the old array
    expect([t.slots, t.moving > 0]).toEqual([2048, true]);
    t.forgetBackend('A');
    expect([t.held(), t.isLive(sid(0), 'A'), t.size]).toEqual([[], false, 512]);
    const release = t.hold(sid(0), 'A', 1000); // back on A, held by a new WebSocket
    expect(t.held()).toEqual([[sid(0), 'A']]);
    release(); // its only holder: the session idles out from now
    now = 1_001;
    expect([t.held(), t.isLive(sid(0), 'A')]).toEqual([[], false]);
  });

  it('keeps the order of expiries before the table was made (a clock stepped back), and takes an expiry of NaN as long past', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const start = 1_800_000_000_000;
    let now = start;
    const t = new SessionTable(() => now);
    t.touch(sid(1), 'n1', start - 60_000); // already expired when recorded
    t.touch(sid(2), 'n1', start + 60_000);
    t.touch(sid(3), 'n1', Number.NaN);
    expect([t.isLive(sid(1), 'n1'), t.isLive(sid(2), 'n1'), t.isLive(sid(3), 'n1')]).toEqual([false, true, false]);
    now = start - 60_000;
    expect(t.isLive(sid(1), 'n1')).toBe(false); // its expiry, exactly
    now = start - 61_000;
    expect(t.isLive(sid(1), 'n1')).toBe(true);
    now = start - 120_000; // the wall clock stepped back two minutes: sid(1) has a minute left
    expect([t.isLive(sid(1), 'n1'), t.isLive(sid(3), 'n1')]).toEqual([true, false]);
    t.sweep();
    expect([t.size, t.count('n1')]).toEqual([2, 2]);
    now = start;
    t.sweep();
    expect([t.size, t.isLive(sid(2), 'n1')]).toEqual([1, true]);
  });

  it('at its cap while growing: an entry evicted after its move stays gone (the old array keeps no copy of it)', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const t = new SessionTable(() => 0, 600);
    const ids = Array.from({ length: 800 }, (_, i) => sid(i));
    const live = (): number => ids.filter((id) => t.isLive(id, 'n1')).length;
    for (let i = 0; i < ids.length; i++) {
      t.touch(ids[i], 'n1', 1000 * (i + 1));
      if (i === 700) {
        expect([t.slots, t.moving > 0]).toEqual([2048, true]); // evicting while the move goes on
        expect([t.size, t.count('n1'), live()]).toEqual([600, 600, 600]);
      }
    }
    expect([t.size, t.count('n1'), live(), t.moving]).toEqual([600, 600, 600, 0]);
  });

  it('stores the session being added when that insert grows the table (a WebSocket hold included)', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const { randomBytes } = await import('node:crypto');
    const now = 0;
    const t = new SessionTable(() => now);
    const ids = Array.from({ length: 513 }, () => randomBytes(12).toString('base64url'));
    for (const id of ids.slice(0, 512)) t.touch(id, 'n1', 10_000);
    const ws = ids[512];
    const release = t.hold(ws, 'n2', 1000); // the 513th entry: the table doubles first
    expect(t.slots).toBe(2048);
    expect(t.held()).toEqual([[ws, 'n2']]);
    expect(ids.every((id, i) => t.isLive(id, i < 512 ? 'n1' : 'n2'))).toBe(true);
    expect([t.size, t.count('n1'), t.count('n2')]).toEqual([513, 512, 1]);
    release();
    expect(t.held()).toEqual([]);
  });

  it('new sessions (one walk of the probe run when there is room): bounded at the cap with held sessions kept; every one stored while the table grows', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const t = new SessionTable(() => 0, 100);
    const release = t.hold(sid(-1), 'n1', 1000);
    for (let i = 0; i < 1000; i++) t.touch(sid(i), 'n2', 1000 * (i + 1));
    expect([t.size, t.count('n1') + t.count('n2'), t.isLive(sid(-1), 'n1'), t.isLive(sid(999), 'n2')]).toEqual([100, 100, true, true]);
    release();
    const u = new SessionTable(() => 0, 1_000_000, 2);
    const ids = Array.from({ length: 64 }, (_, i) => sid(i));
    for (const id of ids) u.touch(id, 'n1', 10_000);
    expect([u.size, u.count('n1'), u.slots, ids.every((id) => u.isLive(id, 'n1'))]).toEqual([64, 64, 128, true]);
  });

  it('touch of an id the table has, at its cap: nothing evicted, no expiry lowered', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 0;
    const t = new SessionTable(() => now, 4);
    t.touch(sid(1), 'n1', 5_000);
    for (let i = 2; i <= 4; i++) t.touch(sid(i), 'n1', 60_000);
    const generation = t.generation;
    t.touch(sid(4), 'n1', 60_000);
    t.touch(sid(1), 'n1', 1_000); // an earlier expiry than it has: kept at 5 s
    expect([t.size, t.generation, [1, 2, 3, 4].every((i) => t.isLive(sid(i), 'n1'))]).toEqual([4, generation, true]);
    now = 3_000;
    expect(t.isLive(sid(1), 'n1')).toBe(true);
  });

  it('reuses the index of a backend with no sessions left once 65,535 backends have come and gone', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const t = new SessionTable(() => 0);
    const [a, b] = [sid(1), sid(2)];
    t.touch(b, 'steady', 10_000);
    // One session re-pinned across 70,000 backend ids, never forgotten (as after removals by reload).
    for (let i = 0; i < 70_000; i++) t.touch(a, `n${i}`, 10_000);
    expect([t.size, t.count('n69999'), t.count('n0'), t.count('steady')]).toEqual([2, 1, 0, 1]);
    expect([t.isLive(a, 'n69999'), t.isLive(b, 'steady')]).toEqual([true, true]);
    t.forgetBackend('n69999');
    t.touch(a, 'again', 10_000); // takes the freed index
    expect([t.size, t.count('again'), t.count('steady')]).toEqual([2, 1, 1]);
  });

  it('with all 65,535 backend indices held by backends with sessions, a session moving on leaves its old backend and holds nothing', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const t = new SessionTable(() => 0);
    for (let i = 0; i < 65_535; i++) t.touch(sid(i), `b${i}`, 10_000);
    t.touch(sid(0), 'new', 10_000); // no index for 'new': not counted, but gone from b0
    expect([t.isLive(sid(0), 'b0'), t.isLive(sid(0), 'new'), t.count('b0'), t.size]).toEqual([false, false, 0, 65_534]);
    t.touch(sid(0), 'new', 10_000); // b0's index, now empty, is taken over
    expect([t.isLive(sid(0), 'new'), t.count('new'), t.count('b0')]).toEqual([true, 1, 0]);
    const release = t.hold(sid(1), 'other', 1000); // no index again: nothing held, nothing to release
    release();
    expect([t.isLive(sid(1), 'b1'), t.isLive(sid(1), 'other'), t.held()]).toEqual([false, false, []]);
  });

  it('changes its generation whenever an entry may have left or lost expiry, and not otherwise', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    let now = 1_000_000;
    const t = new SessionTable(() => now, 4);
    let g = t.generation;
    const changed = (): boolean => {
      const c = t.generation !== g;
      g = t.generation;
      return c;
    };
    t.touch(sid(1), 'n1', now + 10_000);
    expect(changed()).toBe(false); // a new entry
    t.touch(sid(1), 'n1', now + 20_000);
    t.touch(sid(1), 'n1', now + 15_000);
    expect(changed()).toBe(false); // a later expiry, then an earlier one (kept as it was)
    t.touch(sid(1), 'n2', now + 20_000);
    expect(changed()).toBe(true); // re-pinned: it left n1
    for (const i of [2, 3, 4]) t.touch(sid(i), 'n1', now + 30_000 + i);
    expect(changed()).toBe(false);
    t.touch(sid(5), 'n1', now + 40_000);
    expect(changed()).toBe(true); // at the cap: one evicted
    const release = t.hold(sid(5), 'n1', 1000);
    expect(changed()).toBe(false);
    release();
    expect(changed()).toBe(true); // its expiry came down from "held"
    t.sweep();
    expect(changed()).toBe(false); // nothing expired
    now += 35_000;
    t.sweep();
    expect(changed()).toBe(true);
    t.touch(sid(6), 'n1', now + 10_000);
    expect(changed()).toBe(false);
    t.forgetBackend('n1');
    expect(changed()).toBe(true);
  });

  it('ignores ids lb could not have minted', async () => {
    const { SessionTable } = await import('../src/affinity/sessions.js');
    const t = new SessionTable(() => 0);
    for (const id of ['', 'short', 'x'.repeat(17), 'abc+def/ghijklmn', 'abcdefghijklmnoé']) t.touch(id, 'n1', 10_000);
    t.hold('short', 'n1', 1000)();
    expect([t.size, t.count('n1'), t.isLive('short', 'n1'), t.held()]).toEqual([0, 0, false, []]);
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
        // Every length through two blocks and past the third's padding boundary (each residue mod 4 at every word), and one long one.
        for (const len of [...Array.from({ length: 131 }, (_, n) => n), 183, 184, 200]) {
          for (let i = 0; i < 2; i++) {
            const msg = randomBytes(len);
            expect(mac.digest(msg).equals(createHmac('sha256', key).update(msg).digest()), `key ${keyLen}, message ${len}`).toBe(true);
          }
        }
      }
    }
    expect(() => new HmacSha256('k', 4).digest(Buffer.alloc(5))).toThrow(RangeError);
    expect(() => new HmacSha256('k', 2 ** 29 - 64)).toThrow(RangeError); // its length in bits would not fit the padding's 32
    expect(() => new HmacSha256('k', 1.5)).toThrow(RangeError);
    // digestInto: a prefix of the MAC, written in place after the message it signs.
    const buf = randomBytes(49);
    new HmacSha256('k', 33).digestInto(buf, 33, buf, 33, 16);
    expect(() => new HmacSha256('k', 33).digestInto(buf, 33, buf, 40, 16)).toThrow(RangeError); // past the end
    expect(() => new HmacSha256('k', 33).digestInto(buf, 33, Buffer.alloc(64), 0, 33)).toThrow(RangeError); // over 32
    expect(buf.subarray(33).equals(createHmac('sha256', 'k').update(buf.subarray(0, 33)).digest().subarray(0, 16))).toBe(true);
  });

  it('uses the compression its generator writes (src/util/sha256-compress.ts is not edited by hand)', async () => {
    const { readFileSync } = await import('node:fs');
    // @ts-expect-error: a plain .mjs script, no type declarations
    const { generate, target } = await import('../scripts/gen-sha256-compress.mjs');
    expect(readFileSync(target as string, 'utf8') === (generate as () => string)(), 'run node scripts/gen-sha256-compress.mjs').toBe(true);
  });
});

describe('CookieAffinity: a returning client', () => {
  const config = { name: 'lb_affinity', secrets: [], maxIdle: 30 * 60_000, maxLife: 12 * 3600_000 };
  const view = (ids: string[]): PoolView => {
    const all = ids.map((id) => ({ id }) as Backend);
    return { name: 'app', config: {} as PoolView['config'], all, byId: new Map(all.map((b) => [b.id, b])), eligible: all, generation: ids.length };
  };
  const facts = (cookie?: string): RequestFacts => ({ headers: cookie ? { cookie } : {}, url: '/', clientIp: '127.0.0.1' });
  const setup = () => {
    let now = T0;
    const touches: string[] = [];
    const a = new CookieAffinity({ config, secrets: ['s3cret-one'], now: () => now, onTouch: (id, b, expiresAt) => touches.push(`${id}@${b}@${expiresAt}`) });
    const v = view(['n1', 'n2']);
    // A first request: no cookie, placed on n1, given a cookie.
    const first: Decision = { backend: v.byId.get('n1')!, result: 'new', lookup: a.lookup(facts(), v) };
    const setCookie = a.persist(first, false)!;
    const cookie = setCookie.split(';')[0];
    return { a, v, cookie, touches, advance: (ms: number) => (now += ms) };
  };
  const hit = (a: CookieAffinity, v: PoolView, cookie: string): Decision => {
    const lookup = a.lookup(facts(cookie), v);
    expect(lookup.kind).toBe('pinned');
    return { backend: v.byId.get((lookup as { backendId: string }).backendId)!, result: 'hit', lookup };
  };

  it('writes each Set-Cookie for its own scheme and age (the attributes are remembered per scheme, not reused blindly)', () => {
    let now = T0;
    const a = new CookieAffinity({ config: { ...config, domain: 'example.com' }, secrets: ['s3cret-one'], now: () => now });
    const v = view(['n1']);
    const persistNew = (secure: boolean): string => a.persist({ backend: v.byId.get('n1')!, result: 'new', lookup: a.lookup(facts(), v) }, secure)!;
    const life = config.maxLife / 1000;
    const attrs = (age: number, secure: boolean): RegExp => new RegExp(`^lb_affinity=[A-Za-z0-9_-]{66}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${age}; Domain=example\\.com${secure ? '; Secure' : ''}$`);
    for (const secure of [false, true, true, false, true]) expect(persistNew(secure)).toMatch(attrs(life, secure));
    // Re-issued after maxIdle/4 (the session keeps its issue time): a smaller Max-Age, on either scheme.
    const first = persistNew(false).split(';')[0];
    now += config.maxIdle / 4 + 1000;
    const again = (secure: boolean): string => {
      const lookup = a.lookup(facts(first), v);
      return a.persist({ backend: v.byId.get('n1')!, result: 'hit', lookup }, secure)!;
    };
    const left = Math.floor((config.maxLife - config.maxIdle / 4 - 1000) / 1000);
    expect(again(true)).toMatch(attrs(left, true));
    expect(again(false)).toMatch(attrs(left, false));
    expect(persistNew(true)).toMatch(attrs(life, true));
  });

  it('is looked up once per cookie and view; its session stays counted where the client goes, and every return reaches the sink', () => {
    const { a, v, cookie, touches, advance } = setup();
    expect(touches).toHaveLength(1);
    const d1 = hit(a, v, cookie);
    expect(a.persist(d1, false)).toBeUndefined(); // fresh: no new cookie
    advance(60_000); // still fresh (under maxIdle/4): the session's expiry is the cookie's, not now's
    const d2 = hit(a, v, cookie);
    expect(d2.lookup).toBe(d1.lookup); // the cached pin, not decoded again
    expect(a.persist(d2, false)).toBeUndefined();
    expect(d2.sessionId).toBe(d1.sessionId);
    // The primary or the fleet store may have lost the entry without this table knowing: each return is passed on.
    expect(touches).toEqual(Array(3).fill(`${d1.sessionId}@n1@${Math.min(T0 + config.maxIdle, T0 + config.maxLife)}`));
    expect(a.liveSessions('n1')).toBe(1);
    // The session leaves the table (here: its backend forgotten): the next return records it again.
    a.forgetBackend('n1');
    expect(a.liveSessions('n1')).toBe(0);
    a.persist(hit(a, v, cookie), false);
    expect(a.liveSessions('n1')).toBe(1);
  });

  it('a session re-pinned elsewhere and then back on its old cookie is counted where the client went last', () => {
    const { a, v, cookie } = setup();
    const d1 = hit(a, v, cookie);
    a.persist(d1, false);
    // A retry moved the session to n2 and issued a new cookie, which the client never got.
    const moved: Decision = { ...d1, backend: v.byId.get('n2')!, result: 'repin', repinnedFrom: 'n1', repinReason: 'down' };
    expect(a.persist(moved, false)).toMatch(/^lb_affinity=/);
    expect([a.liveSessions('n1'), a.liveSessions('n2')]).toEqual([0, 1]);
    // It comes back with the old cookie, to n1: the cached pin's earlier record no longer stands.
    a.persist(hit(a, v, cookie), false);
    expect([a.liveSessions('n1'), a.liveSessions('n2')]).toEqual([1, 0]);
  });

  it('decides an idle cookie kept valid by a WebSocket again on every request, until the hold ends', () => {
    const { a, v, cookie, advance } = setup();
    const d1 = hit(a, v, cookie);
    a.persist(d1, false);
    const release = a.hold(d1);
    advance(config.maxIdle + 60_000);
    const l1 = a.lookup(facts(cookie), v);
    expect(l1).toMatchObject({ kind: 'pinned', backendId: 'n1' });
    expect(a.lookup(facts(cookie), v)).not.toBe(l1); // decided again each time: the hold may end
    release();
    advance(config.maxIdle + 1000);
    a.sweep();
    expect(a.lookup(facts(cookie), v)).toEqual({ kind: 'rejected', reason: 'expired' });
  });

  it('is not served from the cache once the cookie is idle past maxIdle, or once the pool view changed', () => {
    const { a, v, cookie } = setup();
    const d1 = hit(a, v, cookie);
    a.persist(d1, false);
    // A new view (n1 left the pool): the cookie is mapped again, and still names n1 (re-pinned as "gone" by select).
    const v2 = view(['n2']);
    const moved = a.lookup(facts(cookie), v2);
    expect(moved).not.toBe(d1.lookup);
    expect(moved).toMatchObject({ kind: 'pinned', backendId: 'n1' });
    expect(a.lookup(facts(cookie), v)).not.toBe(d1.lookup);
  });

  it('caches pins by cookie value, wherever the cookie sits in the header, and stays right past the cache size (34,000 cookies, 32,768 slots)', () => {
    const { a, v } = setup();
    const cookies: Array<{ cookie: string; backend: string; sessionId: string }> = [];
    for (let i = 0; i < 34_000; i++) {
      const d: Decision = { backend: v.all[i % 2], result: 'new', lookup: a.lookup(facts(), v) };
      const cookie = a.persist(d, false)!.split(';')[0];
      cookies.push({ cookie, backend: d.backend.id, sessionId: d.sessionId! });
    }
    const wrong: string[] = [];
    for (const round of [0, 1])
      for (const [i, c] of cookies.entries()) {
        const l = a.lookup(facts(i % 3 ? c.cookie : `app=1; ${c.cookie}; theme=dark`), v);
        if (l.kind !== 'pinned' || l.backendId !== c.backend || l.session.id !== c.sessionId) wrong.push(`round ${round}, cookie ${i}: ${JSON.stringify(l)}`);
      }
    expect(wrong).toEqual([]);
    // A forgery that keeps a cached cookie's MAC characters (which place it in the cache) is not served from it.
    const target = cookies[7].cookie;
    expect(a.lookup(facts(target), v)).toMatchObject({ kind: 'pinned' });
    const at = 'lb_affinity='.length + 20;
    const forged = target.slice(0, at) + (target[at] === 'A' ? 'B' : 'A') + target.slice(at + 1);
    expect(a.lookup(facts(forged), v)).toEqual({ kind: 'rejected', reason: 'bad-signature' });
    // A cookie just looked up is served from the cache, whichever header it came in.
    const last = cookies[cookies.length - 1].cookie;
    const pin = a.lookup(facts(`x=1; ${last}`), v);
    expect(a.lookup(facts(last), v)).toBe(pin);
  });

  it('serves no pin cached under an earlier pool view', () => {
    const { a, v, cookie } = setup();
    const d1 = hit(a, v, cookie);
    expect(a.lookup(facts(cookie), v)).toBe(d1.lookup);
    // Another client's cookie, looked up under a new view, switches the affinity to that view first.
    const v2 = view(['n1', 'n2', 'n3']);
    const other = a.persist({ backend: v2.byId.get('n3')!, result: 'new', lookup: a.lookup(facts(), v2) }, false)!.split(';')[0];
    expect(a.lookup(facts(other), v2)).toMatchObject({ kind: 'pinned', backendId: 'n3' });
    const again = a.lookup(facts(cookie), v2);
    expect(again).toMatchObject({ kind: 'pinned', backendId: 'n1' });
    expect(again).not.toBe(d1.lookup);
  });

  it('expires by the cookie clock even when its pin is cached', () => {
    const { a, v, cookie, advance } = setup();
    const d1 = hit(a, v, cookie);
    expect(a.lookup(facts(cookie), v)).toBe(d1.lookup);
    advance(config.maxIdle + 1000);
    a.sweep(); // the session's entry expires too, so nothing keeps the idle cookie valid
    expect(a.lookup(facts(cookie), v)).toEqual({ kind: 'rejected', reason: 'expired' });
  });
});

describe('serializeSetCookie', () => {
  it('writes the attributes each call asks for', () => {
    const base = { name: 'lb', value: 'v', secure: false };
    const cases: Array<[Parameters<typeof serializeSetCookie>[0], string]> = [
      [{ ...base, maxAge: 60 }, 'lb=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60'],
      [{ ...base, maxAge: 60, value: 'w' }, 'lb=w; Path=/; HttpOnly; SameSite=Lax; Max-Age=60'],
      [{ ...base, maxAge: 59 }, 'lb=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=59'],
      [{ ...base, maxAge: 59, secure: true }, 'lb=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=59; Secure'],
      [{ ...base, maxAge: 59, secure: true, domain: 'example.com' }, 'lb=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=59; Domain=example.com; Secure'],
      [{ ...base, maxAge: 59, domain: 'example.com' }, 'lb=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=59; Domain=example.com'],
      [{ ...base }, 'lb=v; Path=/; HttpOnly; SameSite=Lax'],
      [{ ...base, name: 'other', maxAge: 60 }, 'other=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60'],
    ];
    for (const round of [1, 2]) for (const [attrs, expected] of cases) expect(serializeSetCookie(attrs), `round ${round}`).toBe(expected);
  });

  it('new sessions get ids that are all different (random bytes from the pool, each handed out once)', () => {
    const codec = new CookieCodec(['s3cret']);
    const ids = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const { value, sessionId } = codec.mint('n1', Date.now());
      // The id is encoded in JavaScript, apart from the cookie: the same characters as Buffer's base64url of those bytes.
      if (sessionId !== Buffer.from(value, 'base64url').toString('base64url', 13, 25)) expect(sessionId).toBe(Buffer.from(value, 'base64url').toString('base64url', 13, 25));
      ids.add(sessionId);
    }
    expect(ids.size).toBe(5000);
  });
});
