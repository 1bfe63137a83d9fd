import { describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from './helpers/backends.js';
import { startLb } from './helpers/lb.js';
import { JarClient, testAgent } from './helpers/client.js';
import { api } from './helpers/admin.js';

const TOKEN = 'admin-test-token';

function yaml(bs: TestBackend[], extra = ''): string {
  return `
listeners:
  - { name: web, port: 0, host: 127.0.0.1, pool: app }
pools:
  app:
    affinity:
      mode: cookie
      cookie: { secrets: ["admin-secret-value"], maxIdle: 2s }
    balance: round-robin
    drainDeadline: 10m
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
admin: { host: 127.0.0.1, port: 0, token: ${TOKEN} }
state: { file: "\${DIR}/state.json" }
${extra}
`;
}

describe('admin API', () => {
  it('answers bad input with the right status and a JSON error', async () => {
    const bs = await Promise.all(['n1', 'n2'].map((id) => startBackend(id)));
    const lb = await startLb(yaml(bs));
    const base = `http://127.0.0.1:${lb.app.adminPort()}`;
    const cases: Array<[string, string, { token?: string; body?: unknown; raw?: string }, number, string]> = [
      ['GET', '/api/v1/backends', {}, 401, 'LB_UNAUTHORIZED'],
      ['GET', '/api/v1/backends', { token: 'wrong' }, 401, 'LB_UNAUTHORIZED'],
      ['GET', '/api/v1/backends/nope', { token: TOKEN }, 404, 'LB_NOT_FOUND'],
      ['POST', '/api/v1/backends', { token: TOKEN, body: { id: 'n1', url: 'http://127.0.0.1:1' } }, 409, 'LB_CONFLICT'],
      ['POST', '/api/v1/backends', { token: TOKEN, body: { id: 'n9', url: 'ftp://x' } }, 400, 'LB_BAD_REQUEST'],
      ['POST', '/api/v1/backends', { token: TOKEN, body: { id: 'n9', url: 'not a url' } }, 400, 'LB_BAD_REQUEST'],
      ['POST', '/api/v1/backends', { token: TOKEN, raw: '{"id": "n9",' }, 400, 'LB_BAD_JSON'],
      ['PATCH', '/api/v1/backends/n1', { token: TOKEN, body: { weight: 0 } }, 400, 'LB_BAD_REQUEST'],
      ['POST', '/api/v1/backends/n1/drain', { token: TOKEN, body: { deadline: 'soon' } }, 400, 'LB_BAD_REQUEST'],
      ['PUT', '/api/v1/backends', { token: TOKEN }, 405, 'LB_METHOD_NOT_ALLOWED'],
      ['PUT', '/api/v1/state', { token: TOKEN, body: { format: 2 } }, 422, 'LB_STATE_INVALID'],
    ];
    for (const [method, path, opts, status, code] of cases) {
      const r = await api(base, method, path, opts);
      expect([method, path, r.status]).toEqual([method, path, status]);
      expect(r.body.error.code).toBe(code);
      expect(typeof r.body.error.message).toBe('string');
    }
    expect((await api(base, 'GET', '/healthz')).status).toBe(200);
    expect((await api(base, 'GET', '/readyz')).status).toBe(200);
  });

  it('lists backends with the SPEC fields, adds, re-weights, removes (409 while busy), and persists', async () => {
    const bs = await Promise.all(['n1', 'n2'].map((id) => startBackend(id)));
    const extra = await startBackend('n3');
    const lb = await startLb(yaml(bs));
    const base = `http://127.0.0.1:${lb.app.adminPort()}`;
    const list = await api(base, 'GET', '/api/v1/backends', { token: TOKEN });
    expect(list.body.backends.map((b: { id: string }) => b.id)).toEqual(['n1', 'n2']);
    for (const key of ['id', 'pool', 'url', 'weight', 'adminState', 'health', 'status', 'inFlight', 'websockets', 'sessions', 'version']) {
      expect(list.body.backends[0]).toHaveProperty(key);
    }
    const added = await api(base, 'POST', '/api/v1/backends', { token: TOKEN, body: { id: 'n3', url: extra.url, weight: 2, check: true } });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ id: 'n3', weight: 2, adminState: 'active' });
    expect((await api(base, 'PATCH', '/api/v1/backends/n3', { token: TOKEN, body: { weight: 5 } })).body.weight).toBe(5);

    const c = new JarClient(lb.url, testAgent());
    let home = '';
    for (let i = 0; i < 20 && home !== 'n1'; i++) {
      c.jar.clear();
      home = (await c.fetch('/')).json().id;
    }
    expect(home).toBe('n1');
    const busy = await api(base, 'DELETE', '/api/v1/backends/n1', { token: TOKEN });
    expect(busy.status).toBe(409);
    expect(busy.body.error.code).toBe('LB_BACKEND_BUSY');
    expect((await api(base, 'DELETE', '/api/v1/backends/n1?force=true', { token: TOKEN })).status).toBe(204);
    const state = await api(base, 'GET', '/api/v1/state', { token: TOKEN });
    expect(state.body.removed).toEqual(['n1']);
    expect(state.body.backends).toEqual([expect.objectContaining({ id: 'n3', weight: 5, added: true })]);
  });
});
