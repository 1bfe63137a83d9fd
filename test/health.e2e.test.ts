import { describe, expect, it } from 'vitest';
import { startBackend } from './helpers/backends.js';
import { startLb, type RunningLb } from './helpers/lb.js';
import { JarClient, testAgent } from './helpers/client.js';
import { api } from './helpers/admin.js';

function yaml(bs: Array<{ id: string; url: string }>, pool: string, extra = ''): string {
  return `
listeners:
  - { name: web, port: 0, host: 127.0.0.1, pool: app }
pools:
  app:
    affinity:
      mode: cookie
      cookie: { secrets: ["health-secret-value"] }
    balance: round-robin
${pool}
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
${extra || 'admin: { enabled: false }'}
`;
}

const until = async (cond: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const healthOf = (lb: RunningLb, id: string): string => {
  const b = lb.app.registry.get(id)!;
  return b.passiveDown ? 'unhealthy' : b.activeHealth;
};

/** New sessions: each a fresh client with no cookie. Returns backend id → count. */
async function newSessions(lb: RunningLb, n: number): Promise<Map<string, number>> {
  const agent = testAgent({ connections: 20 });
  const split = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const id = (await new JarClient(lb.url, agent).fetch('/')).json().id as string;
    split.set(id, (split.get(id) ?? 0) + 1);
  }
  return split;
}

interface Outcome {
  at: number;
  method: string;
  status: number;
  pinned: string;
  error?: string;
}

describe('health checks and fail-over', () => {
  it('kill a backend under load: GETs retried, POSTs fail cleanly, no errors after detection; it comes back with slow start', async () => {
    let skew = 0;
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startBackend(id, { health: () => ({ status: 200 }) })));
    const lb = await startLb(
      yaml(bs, `    healthCheck: { path: /health, interval: 200ms, timeout: 200ms, rise: 2, fall: 2 }
    passiveHealth: { consecutiveErrors: 3, cooldown: 500ms }
    slowStart: 20s`),
      { now: () => Date.now() + skew },
    );
    await until(() => bs.every((b) => healthOf(lb, b.id) === 'healthy'));
    const agent = testAgent({ connections: 64, headersTimeout: 5000, bodyTimeout: 5000 });
    const clients = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const c = new JarClient(lb.url, agent);
        await c.fetch('/');
        return c;
      }),
    );
    const pinnedTo = (c: JarClient): string => {
      const l = lb.app.balancer.pool('app')!.affinity.lookup({ headers: { cookie: c.cookieHeader() }, url: '/', clientIp: '' }, lb.app.registry.view('app')!);
      return l.kind === 'pinned' ? l.backendId : '?';
    };
    const outcomes: Outcome[] = [];
    let running = true;
    const loops = clients.map(async (c, i) => {
      for (let k = 0; running; k++) {
        const method = (i + k) % 2 ? 'POST' : 'GET';
        const pinned = pinnedTo(c);
        const at = Date.now();
        try {
          const r = await c.fetch(method === 'POST' ? '/upload' : '/', { method, body: method === 'POST' ? 'payload' : undefined });
          outcomes.push({ at, method, status: r.status, pinned });
        } catch (err) {
          outcomes.push({ at, method, status: 0, pinned, error: (err as { code?: string }).code ?? String(err) });
        }
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    const onN1 = clients.filter((c) => pinnedTo(c) === 'n1');
    expect(onN1.length).toBe(10);
    const killedAt = Date.now();
    await bs[0].close();
    await until(() => healthOf(lb, 'n1') === 'unhealthy');
    const detectedAt = Date.now();
    await new Promise((r) => setTimeout(r, 1000));
    running = false;
    await Promise.all(loops);

    const failed = outcomes.filter((o) => o.status !== 200);
    expect(failed.filter((o) => o.status === 0)).toEqual([]); // nothing hung, nothing aborted
    expect(failed.filter((o) => o.method === 'GET')).toEqual([]); // GETs were retried
    for (const f of failed) {
      expect(f).toMatchObject({ method: 'POST', status: 502, pinned: 'n1' }); // only POSTs sent to the dead backend
      expect(f.at).toBeLessThan(detectedAt);
    }
    const after = outcomes.filter((o) => o.at > detectedAt);
    expect(after.length).toBeGreaterThan(100);
    expect(after.every((o) => o.status === 200)).toBe(true);
    expect(onN1.every((c) => pinnedTo(c) !== 'n1')).toBe(true); // re-pinned
    const downEvents = lb.logs().filter((l) => l.event === 'backend.health' && l.backend === 'n1' && l.to === 'unhealthy');
    expect(downEvents).toHaveLength(1); // announced once
    expect(downEvents[0]).toMatchObject({ from: 'healthy' });
    console.log(`detection took ${detectedAt - killedAt} ms; ${failed.length} POSTs got 502 of ${outcomes.length} requests`);

    // Restart n1 on the same port: back after `rise` passing checks, ramping from 10 %.
    const n1again = await startBackend('n1', { port: bs[0].port, health: () => ({ status: 200 }) });
    await until(() => healthOf(lb, 'n1') === 'healthy');
    const early = await newSessions(lb, 200);
    expect(early.get('n1') ?? 0).toBeLessThan(200 * 0.2); // ≤ ~10-15 % of its weight so far, not a third
    expect(early.get('n1') ?? 0).toBeGreaterThan(0);
    // The sessions that moved stay where they are.
    for (const c of onN1) expect((await c.fetch('/')).json().id).not.toBe('n1');
    skew += 20_000; // slow start over
    const later = await newSessions(lb, 300);
    expect(later.get('n1')).toBe(100);
    expect(n1again.seen.length).toBeGreaterThan(0);
  });

  it('a flapping backend does not flap lb\'s view inside the thresholds', async () => {
    let probes = 0;
    let flapping = false;
    const n1 = await startBackend('n1', { health: () => ({ status: !flapping || probes++ % 2 === 0 ? 200 : 500 }) });
    const n2 = await startBackend('n2', { health: () => ({ status: 200 }) });
    const lb = await startLb(yaml([n1, n2], '    healthCheck: { path: /health, interval: 50ms, timeout: 500ms, rise: 3, fall: 3 }'));
    await until(() => healthOf(lb, 'n1') === 'healthy');
    flapping = true;
    await until(() => probes >= 30);
    expect(healthOf(lb, 'n1')).toBe('healthy');
    expect(lb.logs().filter((l) => l.event === 'backend.health' && l.backend === 'n1').map((l) => l.to)).toEqual(['healthy']);
    // Three failures in a row do take it out; three passes bring it back.
    flapping = false;
    let failing = true;
    const n1b = await startBackend('n1b', { health: () => ({ status: failing ? 503 : 200 }) });
    const lb2 = await startLb(yaml([n1b, n2], '    healthCheck: { path: /health, interval: 50ms, timeout: 500ms, rise: 3, fall: 3 }'));
    await until(() => healthOf(lb2, 'n1b') === 'unhealthy');
    failing = false;
    await until(() => healthOf(lb2, 'n1b') === 'healthy');
    expect(lb2.logs().filter((l) => l.event === 'backend.health' && l.backend === 'n1b').map((l) => l.to)).toEqual(['unhealthy', 'healthy']);
  });

  it('checks method, Host, status range and body; reads the version; warns on mixed versions; requireSameVersion keeps the odd one out', async () => {
    const versions: Record<string, string> = { n1: '2.0.0', n2: '2.0.0', n3: '2.1.0' };
    const probesSeen: Array<{ method?: string; host?: string }> = [];
    const bs = await Promise.all(
      ['n1', 'n2', 'n3'].map((id) =>
        startBackend(id, {
          health: (req) => {
            probesSeen.push({ method: req.method, host: req.headers.host });
            return { status: 204, headers: { 'x-app-version': versions[id] }, body: '' };
          },
        }),
      ),
    );
    const lb = await startLb(
      yaml(bs, `    healthCheck: { method: HEAD, path: /health, interval: 50ms, timeout: 500ms, rise: 1, fall: 2, expectStatus: "204", host: health.internal, version: "header:X-App-Version" }
    requireSameVersion: true`, 'admin: { host: 127.0.0.1, port: 0, token: t0k3n-health }'),
    );
    await until(() => bs.every((b) => lb.app.registry.get(b.id)!.version !== undefined));
    expect(probesSeen[0]).toEqual({ method: 'HEAD', host: 'health.internal' });
    const mixed = (): Array<Record<string, unknown>> => lb.logs().filter((l) => l.event === 'pool.versions.mixed');
    await until(() => mixed().some((l) => String(l.excluded) === 'n3'));
    expect(mixed().at(-1)).toMatchObject({ level: 'warn', pool: 'app', versions, excluded: ['n3'] });
    const listed = await api(`http://127.0.0.1:${lb.app.adminPort()}`, 'GET', '/api/v1/backends', { token: 't0k3n-health' });
    expect(Object.fromEntries(listed.body.backends.map((b: { id: string; version: string }) => [b.id, b.version]))).toEqual(versions);
    const split = await newSessions(lb, 60);
    expect(split.get('n3')).toBeUndefined();
    expect(split.get('n1')).toBe(30);
    versions.n3 = '2.0.0'; // upgraded to match
    await until(() => lb.logs().some((l) => l.event === 'pool.versions.same'));
    const again = await newSessions(lb, 60);
    expect(again.get('n3')).toBe(20);
  });

  it('fails a check whose body lacks expectBody or whose status is out of range', async () => {
    let body = 'status: ok';
    let status = 200;
    const n1 = await startBackend('n1', { health: () => ({ status, body }) });
    const lb = await startLb(yaml([n1], '    healthCheck: { path: /health, interval: 50ms, timeout: 500ms, rise: 1, fall: 1, expectStatus: "200-299", expectBody: "ok" }'));
    await until(() => healthOf(lb, 'n1') === 'healthy');
    body = 'status: degraded';
    await until(() => healthOf(lb, 'n1') === 'unhealthy');
    body = 'ok';
    await until(() => healthOf(lb, 'n1') === 'healthy');
    status = 302;
    await until(() => healthOf(lb, 'n1') === 'unhealthy');
  });

  it('passive checks: consecutive 5xx eject a backend for the cooldown, then it is let back', async () => {
    let broken = true;
    const n1 = await startBackend('n1', { handler: (_q, s) => (broken ? s.writeHead(500).end('boom') : s.end(JSON.stringify({ id: 'n1' }))) });
    const n2 = await startBackend('n2');
    const lb = await startLb(yaml([n1, n2], '    passiveHealth: { consecutiveErrors: 3, count5xx: true, cooldown: 500ms }'));
    const agent = testAgent();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await new JarClient(lb.url, agent).fetch('/')).status);
    expect(statuses).toEqual([500, 200, 500, 200, 500, 200]); // round-robin: n1 answered 500 three times
    expect(healthOf(lb, 'n1')).toBe('unhealthy');
    expect(lb.logs().find((l) => l.event === 'backend.health' && l.to === 'unhealthy')).toMatchObject({ backend: 'n1', to: 'unhealthy', source: 'passive' });
    for (let i = 0; i < 4; i++) expect((await new JarClient(lb.url, agent).fetch('/')).json().id).toBe('n2');
    broken = false;
    await until(() => healthOf(lb, 'n1') !== 'unhealthy');
    const split = await newSessions(lb, 10);
    expect(split.get('n1')).toBeGreaterThan(0);
  });

  it('passive checks with active checks: after the cooldown a failing probe keeps it out', async () => {
    let healthy = true;
    const n1 = await startBackend('n1', { health: () => ({ status: healthy ? 200 : 503 }), handler: (req, s) => req.socket.destroy() });
    const n2 = await startBackend('n2', { health: () => ({ status: 200 }) });
    const lb = await startLb(yaml([n1, n2], `    healthCheck: { path: /health, interval: 10s, timeout: 500ms, rise: 1, fall: 5 }
    passiveHealth: { consecutiveErrors: 2, cooldown: 300ms }`));
    await until(() => healthOf(lb, 'n1') === 'healthy');
    healthy = false;
    const agent = testAgent();
    for (let i = 0; i < 6; i++) expect((await new JarClient(lb.url, agent).fetch('/')).status).toBe(200); // resets retried
    expect(lb.app.registry.get('n1')!.passiveDown).toBe(true);
    await new Promise((r) => setTimeout(r, 1000)); // several cooldowns: each re-probe fails
    expect(lb.app.registry.get('n1')!.passiveDown).toBe(true);
    healthy = true;
    await until(() => !lb.app.registry.get('n1')!.passiveDown);
  });
});
