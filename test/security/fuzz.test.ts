import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { parseConfig, ConfigError } from '../../src/config/load.js';
import { CookieCodec } from '../../src/affinity/cookie-codec.js';
import { startBackend } from '../helpers/backends.js';
import { startLb } from '../helpers/lb.js';
import { seeded } from '../helpers/fakes.js';

/** A seeded generator (mulberry32), so a failure is reproducible from the seed printed with it. */
const rng = seeded;

const SEED = Number(process.env.FUZZ_SEED ?? 20261124);
const pick = <T,>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const TOKENS = ['', ' ', ':', '-', '- ', '{', '}', '[', ']', ',', '"', "'", '\n', '  ', '#', '&a', '*a', '!!str', '${X}', '${', '0', '-1', '1e999', 'true', 'null', '~', '5s', 'fast', 'http://', '\t', '\u0000', '\u{1F600}', '<<: *a'];

/** A random value of a random JSON type (nested a little). */
function jsonValue(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 2 ? 6 : 8));
  switch (k) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return pick(r, [0, -1, 1.5, 1e308, -0, 2 ** 53, NaN]);
    case 3: return pick(r, ['', 'n1', 'http://127.0.0.1:1', 'ftp://x', '../../etc', '10m', 'x'.repeat(300), '\u0000', 'draining']);
    case 4: return pick(r, ['active', 'maint', 'drained']);
    case 5: return 7;
    case 6: return Array.from({ length: Math.floor(r() * 4) }, () => jsonValue(r, depth + 1));
    default: {
      const keys = ['id', 'url', 'pool', 'weight', 'check', 'deadline', 'format', 'version', 'backends', 'removed', 'cookieSecret', 'adminState', '__proto__', 'constructor'];
      const o: Record<string, unknown> = {};
      for (let i = 0; i < Math.floor(r() * 5); i++) o[pick(r, keys)] = jsonValue(r, depth + 1);
      return o;
    }
  }
}

describe('fuzzing (seeded; FUZZ_SEED reproduces a run)', () => {
  it('the config loader answers 3,000 mutated configs with a config or a ConfigError, never a crash', () => {
    const r = rng(SEED);
    const base = readFileSync('config/lb.yaml', 'utf8');
    let errors = 0;
    for (let i = 0; i < 3000; i++) {
      let text = base;
      for (let m = 0; m < 1 + Math.floor(r() * 4); m++) {
        const at = Math.floor(r() * text.length);
        const op = Math.floor(r() * 3);
        if (op === 0) text = text.slice(0, at) + pick(r, TOKENS) + text.slice(at);
        else if (op === 1) text = text.slice(0, at) + text.slice(at + 1 + Math.floor(r() * 20));
        else text = text.slice(0, at);
      }
      try {
        parseConfig(text, { file: 'fuzz.yaml', env: { LB_COOKIE_SECRET: 'fuzz-secret-value' }, baseDir: '/tmp' });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw new Error(`seed ${SEED} case ${i}: ${String(err)}\n---\n${text}`);
        expect(err.issues.length, `seed ${SEED} case ${i}`).toBeGreaterThan(0);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(1000); // most mutations are invalid, and each is reported
  });

  it('the cookie decoder answers 50,000 random and mutated values without throwing', () => {
    const r = rng(SEED + 1);
    const codec = new CookieCodec(['fuzz-key-one', 'fuzz-key-two']);
    const now = Date.now();
    const limits = { maxIdle: 60_000, maxLife: 3_600_000 };
    const good = codec.encode({ backendId: 'n1', issuedAt: now, lastSeen: now });
    let accepted = 0;
    for (let i = 0; i < 50_000; i++) {
      let v: string;
      if (r() < 0.5) {
        const buf = Buffer.from(good, 'base64url');
        for (let m = 0; m < 1 + Math.floor(r() * 3); m++) buf[Math.floor(r() * buf.length)] ^= 1 + Math.floor(r() * 255);
        v = buf.toString('base64url');
      } else {
        v = Buffer.from(Array.from({ length: Math.floor(r() * 100) }, () => Math.floor(r() * 256))).toString(r() < 0.5 ? 'base64url' : 'latin1');
      }
      if (v === good) continue; // two flips of one byte can cancel out
      const d = codec.decode(v, now, limits);
      if (d.ok) accepted++;
    }
    expect(accepted).toBe(0); // no mutation or random value ever verifies
    expect(codec.decode(good, now, limits).ok).toBe(true);
  });

  it('the admin API answers 400 random JSON bodies with JSON errors (4xx), never a 5xx, and keeps serving', async () => {
    const r = rng(SEED + 2);
    const b = await startBackend('n1');
    const lb = await startLb(`
listeners: [ { name: web, port: 0, host: 127.0.0.1, pool: app } ]
pools: { app: { backends: [ { id: n1, url: "${b.url}" } ] } }
admin: { host: 127.0.0.1, port: 0, token: fuzz-admin-token }
state: { file: "\${DIR}/state.json" }
`);
    const base = `http://127.0.0.1:${lb.app.adminPort()}`;
    const routes: Array<[string, string]> = [
      ['POST', '/api/v1/backends'], ['PATCH', '/api/v1/backends/n1'], ['POST', '/api/v1/backends/n1/drain'], ['PUT', '/api/v1/state'], ['POST', '/api/v1/broadcast'],
    ];
    const seen = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const [method, path] = pick(r, routes);
      const raw = r() < 0.15 ? JSON.stringify(jsonValue(r)).slice(0, Math.floor(r() * 40)) : JSON.stringify(jsonValue(r));
      const res = await request(base + path, { method: method as 'POST', headers: { authorization: 'Bearer fuzz-admin-token', 'content-type': 'application/json' }, body: raw });
      const text = await res.body.text();
      seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1);
      expect(res.statusCode, `seed ${SEED + 2} case ${i}: ${method} ${path} ${raw} → ${text}`).toBeLessThan(500);
      if (res.statusCode >= 400) expect(JSON.parse(text).error.code, text).toMatch(/^LB_/);
      // Put things back so later cases start from a known state.
      if (lb.app.registry.get('n1')?.adminState !== 'active') await lb.app.control!.enable('n1').catch(() => undefined);
    }
    expect([...seen.keys()].some((s) => s >= 400)).toBe(true);
    const ok = await request(lb.url + '/');
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
  });
});
