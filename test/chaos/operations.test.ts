import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Agent, request } from 'undici';
import { deadPort } from '../helpers/backends.js';
import { lbProcess } from '../helpers/raw.js';
import { makeCert } from '../helpers/certs.js';
import { api } from '../helpers/admin.js';

const TOKEN = 'chaos-token-1234';

/** A backend in its own process (so it can be SIGKILLed): answers {id}; /slow waits 800 ms. */
async function backendProcess(id: string): Promise<{ id: string; url: string; proc: ChildProcess }> {
  const code = `
    const http = require('node:http');
    const s = http.createServer((req, res) => {
      let n = 0;
      req.on('data', (d) => (n += d.length));
      req.on('end', () => {
        const send = () => res.end(JSON.stringify({ id: ${JSON.stringify(id)}, bytes: n }));
        if (req.url.startsWith('/slow')) setTimeout(send, 800); else send();
      });
    });
    s.keepAliveTimeout = 30000;
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  onTestFinished(() => void (proc.exitCode === null && proc.kill('SIGKILL')));
  const port = await new Promise<string>((r) => proc.stdout!.once('data', (d: Buffer) => r(d.toString().trim())));
  return { id, url: `http://127.0.0.1:${port}`, proc };
}

interface Outcome {
  method: string;
  status: number;
  pinned?: string;
  error?: string;
}

describe('operations under load: nothing lost', () => {
  it('drain, add, remove, weight, reload (valid, invalid), certificate reload, kill -9 of a backend, SIGTERM with requests in flight', async () => {
    const [n1, n2, n3, n4] = await Promise.all(['n1', 'n2', 'n3', 'n4'].map(backendProcess));
    const cert = makeCert();
    const adminPort = await deadPort();
    const tlsPort = await deadPort();
    const yaml = (weight1: number, backends = [n1, n2, n3]): string => `
listeners:
  - { name: web, host: 127.0.0.1, port: \${PORT}, pool: app }
  - { name: tls, protocol: https, host: 127.0.0.1, port: ${tlsPort}, pool: app, tls: { cert: ${cert.cert}, key: ${cert.key} } }
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["chaos-secret-value"], maxIdle: 30s } }
    balance: round-robin
    healthCheck: { path: /, interval: 300ms, timeout: 300ms, rise: 1, fall: 2 }
    backends:
${backends.map((b) => `      - { id: ${b.id}, url: "${b.url}"${b.id === 'n1' ? `, weight: ${weight1}` : ''} }`).join('\n')}
admin: { host: 127.0.0.1, port: ${adminPort}, token: ${TOKEN} }
state: { file: "\${DIR}/state.json" }
timeouts: { gracePeriod: 10s }
`;
    const lb = await lbProcess(yaml(1));
    const file = join(lb.dir, 'lb.yaml');
    const admin = `http://127.0.0.1:${adminPort}`;
    const call = (method: string, path: string, body?: unknown) => api(admin, method, path, { token: TOKEN, body });

    const agent = new Agent({ connections: 40, headersTimeout: 15_000, bodyTimeout: 15_000 });
    onTestFinished(() => agent.close());
    const outcomes: Outcome[] = [];
    let running = true;
    const client = async (i: number): Promise<void> => {
      let cookie = '';
      while (running) {
        const method = i % 3 === 0 ? 'POST' : 'GET';
        const o: Outcome = { method, status: 0 };
        try {
          const r = await request(`http://127.0.0.1:${lb.port}/work`, { method, dispatcher: agent, headers: cookie ? { cookie } : {}, body: method === 'POST' ? 'p'.repeat(2048) : undefined });
          const text = await r.body.text();
          o.status = r.statusCode;
          if (r.statusCode === 200) o.pinned = JSON.parse(text).id;
          const sc = r.headers['set-cookie'];
          if (sc) cookie = String(sc).split(';')[0];
        } catch (err) {
          o.error = (err as { code?: string }).code ?? String(err);
        }
        outcomes.push(o);
        await new Promise((r) => setTimeout(r, 15));
      }
    };
    const loops = Array.from({ length: 24 }, (_, i) => client(i));
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const steps: string[] = [];
    const step = async (name: string, fn: () => Promise<void>) => {
      await fn();
      steps.push(name);
      await pause(600);
    };

    await pause(800);
    await step('drain n3', async () => expect((await call('POST', '/api/v1/backends/n3/drain', { deadline: '10m' })).status).toBe(202));
    await step('add n4', async () => expect((await call('POST', '/api/v1/backends', { id: 'n4', url: n4.url })).status).toBe(201));
    await step('weight n1 = 3', async () => expect((await call('PATCH', '/api/v1/backends/n1', { weight: 3 })).status).toBe(200));
    await step('remove n3 (forced: its sessions re-pin)', async () => expect((await call('DELETE', '/api/v1/backends/n3?force=true')).status).toBe(204));
    await step('reload a valid config (SIGHUP)', async () => {
      writeFileSync(file, yaml(2).replace('${PORT}', String(lb.port)).replaceAll('${DIR}', lb.dir));
      lb.proc.proc.kill('SIGHUP');
    });
    await step('reload an invalid config (kept the running one)', async () => {
      writeFileSync(file, 'listeners: [ oops');
      lb.proc.proc.kill('SIGHUP');
    });
    await step('certificate reload', async () => {
      const next = makeCert(cert.dir, 'next');
      copyFileSync(next.cert, cert.cert);
      copyFileSync(next.key, cert.key);
      lb.proc.proc.kill('SIGHUP');
      await pause(300);
      const fp = await new Promise<string>((resolve, reject) => {
        https.get({ host: '127.0.0.1', port: tlsPort, path: '/', rejectUnauthorized: false, agent: false }, (res) => {
          resolve((res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256);
          res.resume();
        }).on('error', reject);
      });
      expect(fp).toBe(next.fingerprint);
    });
    const killedAt = outcomes.length;
    await step('kill -9 of n2', async () => void n2.proc.kill('SIGKILL'));
    await pause(1500); // detection (fall 2 × 300 ms) and beyond

    // SIGTERM with requests in flight: stop the loops, keep slow requests open, then SIGTERM.
    running = false;
    await Promise.all(loops);
    const slow = Array.from({ length: 10 }, () => request(`http://127.0.0.1:${lb.port}/slow`, { dispatcher: agent }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })));
    await pause(200);
    lb.proc.proc.kill('SIGTERM');
    const slowResults = await Promise.all(slow);
    expect(await lb.proc.exited).toBe(0);
    steps.push('SIGTERM with 10 requests in flight');

    const failed = outcomes.map((o, i) => ({ ...o, i })).filter((o) => o.status !== 200);
    const tally = {
      requests: outcomes.length + slowResults.length,
      ok: outcomes.filter((o) => o.status === 200).length + slowResults.filter((r) => r.status === 200).length,
      get: outcomes.filter((o) => o.method === 'GET').length,
      post: outcomes.filter((o) => o.method === 'POST').length,
      failed: failed.map((f) => `${f.method} ${f.status || f.error}`),
    };
    console.log(`chaos tally: ${JSON.stringify(tally)}\nsteps: ${steps.join(' → ')}`);
    expect(slowResults.every((r) => r.status === 200)).toBe(true);
    expect(outcomes.length).toBeGreaterThan(1000);
    // The only failures allowed: POSTs in flight on the killed backend, each a clean 502.
    for (const f of failed) {
      expect(f).toMatchObject({ method: 'POST', status: 502 });
      expect(f.i).toBeGreaterThanOrEqual(killedAt - 30);
    }
    expect(failed.length).toBeLessThanOrEqual(8);
    const logs = lb.proc.logs();
    expect(logs).toMatch(/config\.reload\.rejected/);
    expect(readFileSync(join(lb.dir, 'state.json'), 'utf8')).toMatch(/"n4"/);
  });
});
