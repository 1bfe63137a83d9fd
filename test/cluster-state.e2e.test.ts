import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { deadPort, startBackend } from './helpers/backends.js';
import { lbProcess } from './helpers/raw.js';
import { api } from './helpers/admin.js';

const TOKEN = 'cluster-token-123';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One request on a fresh connection, so the kernel spreads them over the workers. */
async function fetchOnce(url: string): Promise<{ status: number; id?: string }> {
  const agent = new Agent({ pipelining: 0 });
  try {
    const r = await request(url, { headers: { connection: 'close' }, dispatcher: agent });
    const text = await r.body.text();
    let id: string | undefined;
    try {
      id = (JSON.parse(text) as { id?: string }).id;
    } catch {
      /* not JSON */
    }
    return { status: r.statusCode, id };
  } finally {
    await agent.close();
  }
}

/** lb with `workers: 2` and the given pools (YAML under `pools:`), ready; `write` replaces its config file. */
async function clusterLb(pools: (ports: { admin: number }) => string, extra = ''): Promise<{ base: string; admin: string; logs: () => string; write: (y: string) => void; head: string; kill: () => void; alive: () => boolean }> {
  const adminPort = await deadPort();
  const head = `
workers: 2
listeners: [ { name: web, host: 127.0.0.1, port: \${PORT}, pool: app } ]
admin: { host: 127.0.0.1, port: ${adminPort}, token: ${TOKEN} }
state: { file: "\${DIR}/state.json" }
`;
  const lb = await lbProcess(head + extra + 'pools:' + pools({ admin: adminPort }));
  const admin = `http://127.0.0.1:${adminPort}`;
  for (let i = 0; i < 100 && (await api(admin, 'GET', '/readyz')).status !== 200; i++) await sleep(100);
  const fill = (y: string): string => y.replaceAll('${PORT}', String(lb.port)).replaceAll('${DIR}', lb.dir);
  return {
    base: `http://127.0.0.1:${lb.port}`,
    admin,
    logs: lb.proc.logs,
    write: (y) => writeFileSync(join(lb.dir, 'lb.yaml'), fill(y)),
    head,
    kill: () => lb.proc.proc.kill('SIGKILL'),
    alive: () => lb.proc.proc.exitCode === null && lb.proc.proc.signalCode === null,
  };
}

/** The PIDs of the workers that logged they were ready, newest last. */
const workerPids = (logs: string): number[] => [...logs.matchAll(/"event":"cluster\.worker\.ready"[^\n]*"workerPid":(\d+)/g)].map((m) => Number(m[1]));

/** Whether something accepts connections on the port. */
const listening = (port: number): Promise<boolean> =>
  new Promise((r) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      r(true);
    });
    s.on('error', () => r(false));
  });

/** The `app` pool, mode none, with backend n1 at `url` (YAML under `pools:`). */
const appPool = (url: string): string => `
  app:
    affinity: { mode: none }
    backends:
      - { id: n1, url: "${url}" }
`;

describe('workers: 2, state kept in step with the primary', () => {
  it('a reload that adds a pool and a route is applied by every worker before the API answers, and no worker dies', async () => {
    const n1 = await startBackend('n1');
    const r1 = await startBackend('r1');
    const app = appPool(n1.url);
    const lb = await clusterLb(() => app);
    lb.write(`${lb.head}routes:\n  - match: { pathPrefix: /reports/ }\n    pool: replicas\npools:${app}
  replicas:
    affinity: { mode: none }
    backends:
      - { id: r1, url: "${r1.url}" }
`);
    const rl = await api(lb.admin, 'POST', '/api/v1/reload', { token: TOKEN });
    expect(rl.status).toBe(200);
    // Right after the answer, on fresh connections (both workers): the new route and pool serve.
    const res = await Promise.all(Array.from({ length: 16 }, () => fetchOnce(`${lb.base}/reports/x`)));
    expect(res.map((r) => `${r.status}:${r.id}`)).toEqual(res.map(() => '200:r1'));
    await sleep(500);
    expect(lb.logs()).not.toMatch(/"cluster\.worker\.died"/);
    const again = await Promise.all(Array.from({ length: 8 }, () => fetchOnce(`${lb.base}/`)));
    expect(again.map((r) => r.id)).toEqual(again.map(() => 'n1'));
    lb.kill();
  });

  it('a drain is not "drained", and a DELETE without force is refused, while a worker has a request in flight', async () => {
    const n1 = await startBackend('n1');
    const n2 = await startBackend('n2');
    const lb = await clusterLb(() => `
  app:
    affinity: { mode: none }
    backends:
      - { id: n1, url: "${n1.url}" }
  other:
    affinity: { mode: none }
    backends:
      - { id: n2, url: "${n2.url}" }
`);
    // DELETE 30 ms into a 2 s request (well inside a worker's 250 ms report interval), three times.
    for (let i = 0; i < 3; i++) {
      const slow = fetchOnce(`${lb.base}/slow?ms=2000`);
      await sleep(30);
      const d = await api(lb.admin, 'DELETE', '/api/v1/backends/n1', { token: TOKEN });
      expect(d.status).toBe(409);
      expect(d.body.error.code).toBe('LB_BACKEND_BUSY');
      expect((await slow).id).toBe('n1');
    }
    // Drain 30 ms into a 3 s request: draining with it counted, and still draining while it runs.
    const slow = fetchOnce(`${lb.base}/slow?ms=3000`);
    await sleep(30);
    const d = await api(lb.admin, 'POST', '/api/v1/backends/n1/drain', { token: TOKEN, body: {} });
    expect(d.status).toBe(202);
    expect([d.body.adminState, d.body.inFlight]).toEqual(['draining', 1]);
    await sleep(1200);
    expect((await api(lb.admin, 'GET', '/api/v1/backends/n1', { token: TOKEN })).body.adminState).toBe('draining');
    expect((await slow).id).toBe('n1');
    let state = '';
    for (let i = 0; i < 30 && state !== 'drained'; i++, await sleep(100)) state = (await api(lb.admin, 'GET', '/api/v1/backends/n1', { token: TOKEN })).body.adminState;
    expect(state).toBe('drained');
    lb.kill();
  });

  it('metrics across a worker replacement: counters and dashboard rates never go down, /metrics answers while a worker starts', async () => {
    const n1 = await startBackend('n1');
    const lb = await clusterLb(() => `
  app:
    affinity: { mode: none }
    backends:
      - { id: n1, url: "${n1.url}" }
`);
    const scrape = async (): Promise<{ status: number; total: number }> => {
      const r = await request(`${lb.admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const text = await r.body.text();
      return { status: r.statusCode, total: [...text.matchAll(/^lb_requests_total\{[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0) };
    };
    const rps: number[] = [];
    const stream = await request(`${lb.admin}/api/v1/stream`, { headers: { authorization: `Bearer ${TOKEN}` } });
    let buf = '';
    stream.body.on('data', (d: Buffer) => {
      buf += d;
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const ev = JSON.parse(buf.slice(buf.indexOf('{'), i)) as { pools: Array<{ backends: Array<{ rps: number }> }> };
        buf = buf.slice(i + 2);
        rps.push(ev.pools[0].backends[0].rps);
      }
    });
    stream.body.on('error', () => undefined);

    for (let i = 0; i < 100; i++) await fetchOnce(`${lb.base}/`);
    expect(await scrape()).toEqual({ status: 200, total: 100 });
    await sleep(1500);
    const pid = Number(/"workerPid":(\d+)/.exec(lb.logs())![1]);
    process.kill(pid, 'SIGKILL');
    await sleep(30);
    const during = await scrape();
    expect(during.status).toBe(200);
    expect(during.total).toBe(100);
    const readyLines = (): number => (lb.logs().match(/"cluster\.worker\.ready"/g) ?? []).length;
    for (let i = 0; i < 100 && readyLines() < 3; i++) await sleep(100);
    expect(readyLines()).toBe(3);
    expect((await scrape()).status).toBe(200); // the new worker answers too
    for (let i = 0; i < 10; i++) await fetchOnce(`${lb.base}/`);
    await sleep(1500);
    expect(await scrape()).toEqual({ status: 200, total: 110 });
    stream.body.destroy();
    expect(rps.length).toBeGreaterThan(3);
    expect(Math.min(...rps)).toBeGreaterThanOrEqual(0);
    lb.kill();
  });

  it('hash mode: keys any worker saw on a draining backend stay there on every worker', async () => {
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startBackend(id)));
    const lb = await clusterLb(() => `
  app:
    affinity: { mode: hash, hash: { key: "header:x-user" } }
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
`);
    const as = async (key: string): Promise<string | undefined> => {
      const agent = new Agent({ pipelining: 0 });
      try {
        const r = await request(`${lb.base}/`, { headers: { connection: 'close', 'x-user': key }, dispatcher: agent });
        return ((await r.body.json()) as { id: string }).id;
      } finally {
        await agent.close();
      }
    };
    const keys = Array.from({ length: 90 }, (_, i) => `user-${i}`);
    const first = await Promise.all(keys.map(as));
    const onN3 = keys.filter((_, i) => first[i] === 'n3');
    expect(onN3.length).toBeGreaterThan(5);
    await sleep(600); // a report interval: the primary knows these keys
    expect((await api(lb.admin, 'POST', '/api/v1/backends/n3/drain', { token: TOKEN, body: {} })).status).toBe(202);
    for (let round = 0; round < 4; round++) {
      const again = await Promise.all(onN3.map(as));
      expect(again).toEqual(onN3.map(() => 'n3'));
    }
    const fresh = await Promise.all(Array.from({ length: 30 }, (_, i) => as(`new-${i}`)));
    expect(fresh).not.toContain('n3');
    lb.kill();
  });

  it('a replacement worker listens and proxies as its siblings do after a reload that moved the listener (reported: restart to apply)', async () => {
    const n1 = await startBackend('n1');
    const app = appPool(n1.url);
    const lb = await clusterLb(() => app);
    const oldPort = Number(new URL(lb.base).port);
    const newPort = await deadPort();
    lb.write(lb.head.replace('${PORT}', String(newPort)) + 'timeouts: { backendResponse: 5s }\npools:' + app);
    const rl = await api(lb.admin, 'POST', '/api/v1/reload', { token: TOKEN });
    expect(rl.status).toBe(200);
    expect(JSON.stringify(rl.body)).toMatch(/listeners changed: restart/);
    expect(JSON.stringify(rl.body)).toMatch(/timeouts changed: restart/);
    const [first] = workerPids(lb.logs());
    process.kill(first, 'SIGKILL');
    for (let i = 0; i < 100 && workerPids(lb.logs()).length < 3; i++) await sleep(50);
    expect(workerPids(lb.logs())).toHaveLength(3);
    expect(await listening(newPort)).toBe(false);
    expect(await listening(oldPort)).toBe(true);
    const res = await Promise.all(Array.from({ length: 8 }, () => fetchOnce(`${lb.base}/`)));
    expect(res.map((r) => r.id)).toEqual(res.map(() => 'n1'));
    lb.kill();
  });

  it('a reload that cannot be applied (a missing tlsCa) changes nothing, and every worker keeps serving', async () => {
    const n1 = await startBackend('n1');
    const n2 = await startBackend('n2');
    const app = appPool(n1.url);
    const lb = await clusterLb(() => app);
    // p2 comes first and gets its backend; p3's CA is read only when its https backend is added.
    lb.write(`${lb.head}pools:${app}
  p2:
    affinity: { mode: none }
    backends:
      - { id: n2, url: "${n2.url}" }
  p3:
    affinity: { mode: none }
    tlsCa: missing-ca.pem
    backends:
      - { id: n3, url: "https://127.0.0.1:1" }
`);
    const rl = await api(lb.admin, 'POST', '/api/v1/reload', { token: TOKEN });
    expect(rl.status).toBe(422);
    expect(JSON.stringify(rl.body)).toMatch(/pools\.p3\.tlsCa: cannot read missing-ca\.pem/);
    await sleep(700);
    expect(lb.logs()).not.toMatch(/"cluster\.worker\.(diverged|died)"/);
    expect(lb.alive()).toBe(true);
    const res = await Promise.all(Array.from({ length: 8 }, () => fetchOnce(`${lb.base}/`)));
    expect(res.map((r) => `${r.status}:${r.id}`)).toEqual(res.map(() => '200:n1'));
    lb.kill();
  });
});
