import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startBackend } from './helpers/backends.js';
import { deadPort } from './helpers/backends.js';
import { lbProcess } from './helpers/raw.js';
import { api } from './helpers/admin.js';
import { parseMetrics } from './helpers/prom.js';

const TOKEN = 'cluster-token-123';

/** A fresh connection per request, so the kernel spreads them over the workers. */
async function fetchOnce(url: string, cookie?: string): Promise<{ id: string; cookie?: string }> {
  const agent = new Agent({ pipelining: 0 });
  try {
    const r = await request(url, { headers: cookie ? { cookie, connection: 'close' } : { connection: 'close' }, dispatcher: agent });
    const body = (await r.body.json()) as { id: string };
    const sc = r.headers['set-cookie'];
    return { id: body.id, cookie: sc ? String(sc).split(';')[0] : undefined };
  } finally {
    await agent.close();
  }
}

const accessPids = (logs: string): Set<number> => new Set(logs.split('\n').filter((l) => l.includes('"access":true')).map((l) => JSON.parse(l).pid as number));

describe('workers: 2', () => {
  it('sticky across workers, a drain seen by every worker before the API answers, metrics aggregated, a killed worker replaced, graceful stop', async () => {
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startBackend(id)));
    const adminPort = await deadPort();
    const lb = await lbProcess(`
workers: 2
listeners: [ { name: web, host: 127.0.0.1, port: \${PORT}, pool: app } ]
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["cluster-secret-value"] } }
    balance: round-robin
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
admin: { host: 127.0.0.1, port: ${adminPort}, token: ${TOKEN} }
state: { file: "\${DIR}/state.json" }
`);
    const admin = `http://127.0.0.1:${adminPort}`;
    const base = `http://127.0.0.1:${lb.port}/`;
    const ready = async (): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        if ((await api(admin, 'GET', '/readyz')).status === 200) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('not ready');
    };
    await ready();

    // Stickiness: 40 users × 6 requests, each on a new connection (any worker).
    const users = await Promise.all(Array.from({ length: 40 }, () => fetchOnce(base)));
    for (let round = 0; round < 5; round++) {
      const again = await Promise.all(users.map((u) => fetchOnce(base, u.cookie)));
      again.forEach((a, i) => expect(a.id).toBe(users[i].id));
    }
    expect(accessPids(lb.proc.logs()).size).toBe(2); // both workers served

    // A drain is applied by every worker before the API answers: no new session reaches n3 after it.
    const drained = await api(admin, 'POST', '/api/v1/backends/n3/drain', { token: TOKEN, body: {} });
    expect(drained.status).toBe(202);
    const fresh = await Promise.all(Array.from({ length: 40 }, () => fetchOnce(base)));
    expect(fresh.map((f) => f.id)).not.toContain('n3');
    const onN3 = users.filter((u) => u.id === 'n3');
    expect(onN3.length).toBeGreaterThan(0);
    for (const u of onN3) expect((await fetchOnce(base, u.cookie)).id).toBe('n3'); // existing sessions continue

    // Metrics aggregated over the workers: the request counter equals every request made.
    await new Promise((r) => setTimeout(r, 600)); // one report interval
    const made = 40 * 6 + 40 + onN3.length;
    const m = parseMetrics((await (await request(`${admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.text()));
    const total = m.get('lb_requests_total')!.samples.reduce((a, s) => a + s.value, 0);
    expect(total).toBe(made);
    const live = m.get('lb_sessions_live')!.samples.reduce((a, s) => a + s.value, 0);
    expect(live).toBe(80); // 40 users + 40 fresh sessions, counted once however many workers saw them
    const b = (await api(admin, 'GET', '/api/v1/backends/n3', { token: TOKEN })).body;
    expect(b.sessions).toBe(onN3.length);

    // Kill a worker: it is replaced, the drain is still in force in the new one, nothing else changes.
    const pids = [...lb.proc.logs().matchAll(/"workerPid":(\d+)/g)].map((x) => Number(x[1]));
    process.kill(pids[0], 'SIGKILL');
    const readyLines = (): number => (lb.proc.logs().match(/"cluster\.worker\.ready"/g) ?? []).length;
    for (let i = 0; i < 100 && readyLines() < 3; i++) await new Promise((r) => setTimeout(r, 100));
    expect(readyLines()).toBe(3);
    expect(lb.proc.logs()).toMatch(/"cluster\.worker\.died"/);
    const after = await Promise.all(Array.from({ length: 40 }, () => fetchOnce(base)));
    expect(after.map((f) => f.id)).not.toContain('n3');
    for (const u of users.slice(0, 10)) expect((await fetchOnce(base, u.cookie)).id).toBe(u.id);

    // Graceful stop across workers.
    lb.proc.proc.kill('SIGTERM');
    expect(await lb.proc.exited).toBe(0);
  });
});
