import { describe, expect, it } from 'vitest';
import { deadPort, startBackend, type TestBackend } from './helpers/backends.js';
import { startLb } from './helpers/lb.js';
import { JarClient, testAgent, get } from './helpers/client.js';
import { CookieCodec } from '../src/affinity/cookie-codec.js';

const SECRET = 'test-secret-0123456789';

function poolYaml(backends: TestBackend[], weights: number[] = [], extra = ''): string {
  return `
listeners:
  - { name: web, port: 0, host: 127.0.0.1, pool: app }
pools:
  app:
    affinity:
      mode: cookie
      cookie: { name: lb_affinity, secrets: ["${SECRET}"], maxIdle: 30m, maxLife: 12h }
${extra}
    balance: round-robin
    backends:
${backends.map((b, i) => `      - { id: ${b.id}, url: "${b.url}", weight: ${weights[i] ?? 1} }`).join('\n')}
admin: { enabled: false }
state: { file: "\${DIR}/state.json" }
`;
}

describe('cookie affinity end to end', () => {
  it('300 clients × 10 requests stay on one backend; new sessions split by weight within ±15%', async () => {
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startBackend(id)));
    const lb = await startLb(poolYaml(bs, [1, 2, 3]));
    const agent = testAgent({ connections: 50 });
    const clients = Array.from({ length: 300 }, () => new JarClient(lb.url, agent));
    const placed: Record<string, number> = { n1: 0, n2: 0, n3: 0 };
    await Promise.all(
      clients.map(async (c) => {
        const seen = new Set<string>();
        for (let i = 0; i < 10; i++) {
          const r = await c.fetch('/');
          expect(r.status).toBe(200);
          seen.add(r.json().id);
          // The affinity cookie never reaches the backend.
          expect(r.json().headers.cookie ?? '').not.toContain('lb_affinity');
        }
        expect(seen.size).toBe(1);
        placed[[...seen][0]]++;
      }),
    );
    const total = 300;
    for (const [id, share] of [['n1', 1 / 6], ['n2', 2 / 6], ['n3', 3 / 6]] as const) {
      expect(Math.abs(placed[id] - total * share)).toBeLessThanOrEqual(total * share * 0.15);
    }
  });

  it('sets the cookie with the right attributes, Cache-Control private, and re-issues only after maxIdle/4', async () => {
    const b = await startBackend('n1');
    let now = Date.now();
    const lb = await startLb(poolYaml([b]), { now: () => now });
    const c = new JarClient(lb.url, testAgent());
    const first = await c.fetch('/');
    const sc = String(first.headers['set-cookie']);
    expect(sc).toMatch(/^lb_affinity=[A-Za-z0-9_-]{66}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+$/);
    expect(first.headers['cache-control']).toBe('private');
    now += 60_000;
    const second = await c.fetch('/');
    expect(second.headers['set-cookie']).toBeUndefined();
    expect(second.headers['cache-control']).toBeUndefined();
    now += 8 * 60_000; // past 30m / 4 since last-seen
    const third = await c.fetch('/');
    expect(String(third.headers['set-cookie'])).toContain('lb_affinity=');
  });

  it('never honours tampered, expired, foreign-key or unknown-backend cookies, and never answers 5xx for them', async () => {
    const bs = await Promise.all(['n1', 'n2'].map((id) => startBackend(id)));
    let now = Date.now();
    const lb = await startLb(poolYaml(bs), { now: () => now });
    const agent = testAgent();
    const real = new CookieCodec([SECRET]);
    const tamper = (v: string): string => {
      const buf = Buffer.from(v, 'base64url');
      buf[7] ^= 0xff;
      return buf.toString('base64url');
    };
    const pinned = real.encode({ backendId: 'n2', issuedAt: now, lastSeen: now });
    const cases = {
      tampered: tamper(pinned),
      expired: real.encode({ backendId: 'n2', issuedAt: now - 3600_000, lastSeen: now - 3600_000 }),
      'foreign-key': new CookieCodec(['someone-else']).encode({ backendId: 'n2', issuedAt: now, lastSeen: now }),
      'unknown-backend': real.encode({ backendId: 'node-99', issuedAt: now, lastSeen: now }),
      garbage: 'x'.repeat(300),
    };
    for (const [name, value] of Object.entries(cases)) {
      const r = await get(`${lb.url}/`, { headers: { cookie: `lb_affinity=${value}` }, agent });
      expect(r.status, name).toBe(200);
      // A fresh, valid cookie replaces the bad one.
      const fresh = String(r.headers['set-cookie']).split(';')[0].split('=')[1];
      expect(real.decode(fresh, now, { maxIdle: 1800_000, maxLife: 43_200_000 }).ok, name).toBe(true);
      expect(fresh).not.toBe(value);
    }
    const honoured = await get(`${lb.url}/`, { headers: { cookie: `lb_affinity=${pinned}` }, agent });
    expect(honoured.json().id).toBe('n2');
    const reasons = lb.logs().filter((l) => l.access).map((l) => l.affinity);
    expect(reasons.filter((r) => r === 'rejected')).toHaveLength(5);
    expect(reasons.at(-1)).toBe('hit');
  });

  it('re-pins with X-LB-Repinned when the pinned backend is in maint or gone; strict answers 503', async () => {
    const bs = await Promise.all(['n1', 'n2'].map((id) => startBackend(id)));
    const lb = await startLb(poolYaml(bs));
    const c = new JarClient(lb.url, testAgent());
    const home = (await c.fetch('/')).json().id as string;
    const other = home === 'n1' ? 'n2' : 'n1';
    lb.app.registry.setAdminState(home, 'maint');
    const moved = await c.fetch('/');
    expect(moved.json().id).toBe(other);
    expect(moved.json().headers['x-lb-repinned']).toBe(`${home}; reason=maint`);
    expect(String(moved.headers['set-cookie'])).toContain('lb_affinity=');
    // The rewritten cookie sticks to the new backend, with no further re-pin.
    const after = await c.fetch('/');
    expect(after.json().id).toBe(other);
    expect(after.json().headers['x-lb-repinned']).toBeUndefined();
    lb.app.registry.setAdminState(home, 'active');
    lb.app.registry.remove(other);
    const gone = await c.fetch('/');
    expect(gone.json().headers['x-lb-repinned']).toBe(`${other}; reason=gone`);

    const strict = await startLb(poolYaml(bs, [], '      strict: true'));
    const s = new JarClient(strict.url, testAgent());
    const pin = (await s.fetch('/')).json().id as string;
    strict.app.registry.setAdminState(pin, 'maint');
    const refused = await s.fetch('/');
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/^503 Service Unavailable/);
  });

  it('a client pinned to a backend that refuses connections is retried on the others, each tried once; the answer says repinned, reason down', async () => {
    const dead = async (id: string): Promise<TestBackend> => ({ id, url: `http://127.0.0.1:${await deadPort()}` }) as unknown as TestBackend;
    const live = await startBackend('n3');
    // No passive or active checks: every refusal is met by a retry, never by an ejection first.
    const lb = await startLb(poolYaml([await dead('d1'), await dead('d2'), live], [], '    passiveHealth: { enabled: false }'));
    const now = Date.now();
    const cookie = `lb_affinity=${new CookieCodec([SECRET]).encode({ backendId: 'd1', issuedAt: now, lastSeen: now })}`;
    // The client keeps its old cookie (it ignores the new one), so every request starts at d1.
    for (let i = 0; i < 6; i++) {
      const r = await get(`${lb.url}/`, { headers: { cookie } });
      expect(r.status).toBe(200);
      expect(r.json().id).toBe('n3');
      expect(r.json().headers['x-lb-repinned']).toBe('d1; reason=down');
    }
    const lines = lb.logs().filter((l) => l.access);
    expect(lines).toHaveLength(6);
    for (const l of lines) expect(l).toMatchObject({ status: 200, backend: 'n3', affinity: 'repin', reason: 'down' });
    // Retries go d1 → (d2 →) n3: with two retries allowed, d2 tried twice would have left a 502.
    expect(new Set(lines.map((l) => l.retries))).toEqual(new Set([1, 2]));
  });

  it('a client spoofing X-LB-Repinned never reaches the backend with it', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(poolYaml([b]));
    const r = await get(`${lb.url}/`, { headers: { 'x-lb-repinned': 'node-9; reason=down' } });
    expect(r.json().headers['x-lb-repinned']).toBeUndefined();
  });

  it('a generated secret (no secrets configured) survives a restart through the state file', async () => {
    const b = await startBackend('n1');
    const yaml = poolYaml([b]).replace(`secrets: ["${SECRET}"], `, '');
    const first = await startLb(yaml);
    const c = new JarClient(first.url, testAgent());
    await c.fetch('/');
    await first.app.stop(100);
    const second = await startLb(yaml, { dir: first.dir });
    const again = await get(`${second.url}/`, { headers: { cookie: c.cookieHeader()! } });
    expect(again.headers['set-cookie']).toBeUndefined();
    expect(second.logs().find((l) => l.access)?.affinity).toBe('hit');
  });
});
