import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startBackend, deadPort } from './helpers/backends.js';
import { startLb, type RunningLb } from './helpers/lb.js';
import { JarClient, get, testAgent } from './helpers/client.js';
import { openWs, startWsBackend } from './helpers/ws.js';
import { parseMetrics, valueOf } from './helpers/prom.js';

const TOKEN = 'metrics-test-token';

async function scrape(lb: RunningLb) {
  const res = await request(`http://127.0.0.1:${lb.app.adminPort()}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.body.text());
}

const REQUIRED = [
  'lb_requests_total', 'lb_request_duration_seconds', 'lb_backend_status', 'lb_backend_health', 'lb_backend_inflight', 'lb_websockets_open',
  'lb_sessions_live', 'lb_affinity_total', 'lb_retries_total', 'lb_health_checks_total', 'lb_health_check_duration_seconds', 'lb_drain_remaining_sessions',
];

describe('/metrics', () => {
  it('every lb_* family has HELP and TYPE, and the counters move as traffic passes', async () => {
    const [n1, n2] = await Promise.all(['n1', 'n2'].map((id) => startWsBackend(id)));
    const dead = await deadPort();
    const lb = await startLb(`
listeners:
  - { name: web, port: 0, host: 127.0.0.1, pool: app }
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["metrics-secret-value"] } }
    balance: round-robin
    healthCheck: { path: /, interval: 100ms, timeout: 500ms, rise: 1, fall: 1 }
    backends:
      - { id: n1, url: "${n1.url}" }
      - { id: n2, url: "${n2.url}" }
  other:
    affinity: { mode: none }
    backends:
      - { id: gone, url: "http://127.0.0.1:${dead}" }
      - { id: n1b, url: "${n1.url}" }
routes:
  - { match: { pathPrefix: /other }, pool: other }
admin: { host: 127.0.0.1, port: 0, token: ${TOKEN} }
`);
    const before = await scrape(lb);
    for (const name of REQUIRED) expect(before.has(name), name).toBe(true);
    for (const f of before.values()) {
      if (!f.name.startsWith('lb_')) continue;
      expect(f.help, f.name).toBeTruthy();
      expect(f.type, f.name).toMatch(/^(counter|gauge|histogram)$/);
    }
    expect(before.has('process_cpu_user_seconds_total') || before.has('process_cpu_seconds_total')).toBe(true); // Node defaults
    expect(before.has('nodejs_eventloop_lag_seconds')).toBe(true);
    const buckets = before.get('lb_request_duration_seconds')!;
    expect(buckets.type).toBe('histogram');

    // Traffic: 10 new sessions, 10 hits, 1 forged cookie, retried requests, one WebSocket.
    const agent = testAgent();
    const clients = Array.from({ length: 10 }, () => new JarClient(lb.url, agent));
    for (const c of clients) await c.fetch('/');
    for (const c of clients) await c.fetch('/');
    await get(`${lb.url}/`, { headers: { cookie: 'lb_affinity=forged' }, agent });
    for (let i = 0; i < 4; i++) expect((await get(`${lb.url}/other`, { agent })).status).toBe(200);
    const ws = await openWs(`ws://127.0.0.1:${lb.port()}/socket`);
    await new Promise((r) => setTimeout(r, 300)); // a few health probes

    const after = await scrape(lb);
    const ok = (backend: string): number => valueOf(after, 'lb_requests_total', { pool: 'app', backend, status_class: '2xx' });
    expect(ok('n1') + ok('n2')).toBe(21);
    expect(valueOf(after, 'lb_request_duration_seconds', { pool: 'app', backend: 'n1', status_class: '2xx' }, 'lb_request_duration_seconds_count')).toBe(ok('n1'));
    const le = after.get('lb_request_duration_seconds')!.samples.filter((s) => s.name.endsWith('_bucket') && s.labels.backend === 'n1' && s.labels.status_class === '2xx').map((s) => s.labels.le);
    expect(le[0]).toBe('0.0005');
    expect(le).toContain('10');
    expect(valueOf(after, 'lb_affinity_total', { pool: 'app', result: 'new' })).toBe(11); // 10 + the WebSocket
    expect(valueOf(after, 'lb_affinity_total', { pool: 'app', result: 'hit' })).toBe(10);
    expect(valueOf(after, 'lb_affinity_total', { pool: 'app', result: 'rejected', reason: 'malformed' })).toBe(1);
    expect(valueOf(after, 'lb_retries_total', { pool: 'other' })).toBe(2);
    expect(valueOf(after, 'lb_websockets_open', { pool: 'app', backend: ws.backend })).toBe(1);
    expect(valueOf(after, 'lb_sessions_live', { pool: 'app', backend: 'n1' }) + valueOf(after, 'lb_sessions_live', { pool: 'app', backend: 'n2' })).toBe(12);
    expect(valueOf(after, 'lb_health_checks_total', { pool: 'app', backend: 'n1', result: 'pass' })).toBeGreaterThan(0);
    expect(valueOf(after, 'lb_backend_status', { backend: 'n1', status: 'up' })).toBe(1);
    expect(valueOf(after, 'lb_backend_status', { backend: 'n1', status: 'draining' })).toBe(0);

    // Drain n1: status and remaining follow.
    await lb.app.control!.drain('n1', {});
    const drained = await scrape(lb);
    expect(valueOf(drained, 'lb_backend_status', { backend: 'n1', status: 'draining' })).toBe(1);
    expect(valueOf(drained, 'lb_drain_remaining_sessions', { backend: 'n1' })).toBe(lb.app.drains.progress(lb.app.registry.get('n1')!).remaining);
    expect(valueOf(drained, 'lb_drain_remaining_sessions', { backend: 'n1' })).toBeGreaterThan(0);
    ws.ws.close();
    void n2;
  });

  it('needs the admin token', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(`
listeners: [ { name: web, port: 0, host: 127.0.0.1, pool: app } ]
pools: { app: { backends: [ { id: n1, url: "${b.url}" } ] } }
admin: { host: 127.0.0.1, port: 0, token: ${TOKEN} }
`);
    const res = await request(`http://127.0.0.1:${lb.app.adminPort()}/metrics`);
    expect(res.statusCode).toBe(401);
    await res.body.dump();
  });
});
