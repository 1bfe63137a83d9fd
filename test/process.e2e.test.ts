import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startBackend, deadPort } from './helpers/backends.js';
import { runCli, startLbProcess } from './helpers/process.js';

describe('the lb process', () => {
  it('lets every in-flight request complete on SIGTERM, then exits 0', async () => {
    const b = await startBackend('n1');
    const port = await deadPort();
    const dir = mkdtempSync(join(tmpdir(), 'lb-proc-'));
    const file = join(dir, 'lb.yaml');
    writeFileSync(file, `
listeners:
  - { name: web, host: 127.0.0.1, port: ${port}, pool: app }
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["proc-test-secret"] } }
    backends: [ { id: n1, url: "${b.url}" } ]
timeouts: { gracePeriod: 10s }
admin: { enabled: false }
state: { file: state.json }
`);
    const lb = await startLbProcess(file);
    const inflight = Array.from({ length: 20 }, () => request(`http://127.0.0.1:${port}/slow?ms=1000`).then(async (r) => ({ status: r.statusCode, body: await r.body.json() })));
    await new Promise((r) => setTimeout(r, 300));
    lb.proc.kill('SIGTERM');
    const results = await Promise.all(inflight);
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(await lb.exited).toBe(0);
    expect(lb.logs()).toContain('lb.stopped');
  });

  it('SIGHUP applies a valid config live and leaves the running config alone when the new one is invalid', async () => {
    const a = await startBackend('a');
    const bNew = await startBackend('b');
    const port = await deadPort();
    const dir = mkdtempSync(join(tmpdir(), 'lb-proc-'));
    const file = join(dir, 'lb.yaml');
    const write = (backends: string) => writeFileSync(file, `
listeners:
  - { name: web, host: 127.0.0.1, port: ${port}, pool: app }
pools:
  app:
    affinity: { mode: none }
    backends: ${backends}
admin: { enabled: false }
state: { file: state.json }
`);
    write(`[ { id: a, url: "${a.url}" } ]`);
    const lb = await startLbProcess(file);
    const ids = async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add((await request(`http://127.0.0.1:${port}/`).then((r) => r.body.json()) as { id: string }).id);
      return [...seen].sort();
    };
    expect(await ids()).toEqual(['a']);
    write(`[ { id: a, url: "${a.url}" }, { id: b, url: "${bNew.url}" } ]`);
    lb.proc.kill('SIGHUP');
    await expect.poll(ids, { timeout: 5000 }).toEqual(['a', 'b']);
    write(`[ { id: a, url: "not a url" } ]`);
    lb.proc.kill('SIGHUP');
    await expect.poll(() => lb.logs(), { timeout: 5000 }).toContain('config.reload.rejected');
    expect(await ids()).toEqual(['a', 'b']);
    lb.proc.kill('SIGTERM');
    expect(await lb.exited).toBe(0);
  });

  it('lb check-config exits 0 on a valid file and 1 listing every error with its line', async () => {
    const ok = await runCli(['check-config', 'config/demo.yaml']);
    expect(ok.code).toBe(0);
    // The reference config documents every key; it must stay valid too.
    expect(await runCli(['check-config', 'config/lb.yaml'], { LB_COOKIE_SECRET: 'reference-secret-1' })).toMatchObject({ code: 0 });
    const dir = mkdtempSync(join(tmpdir(), 'lb-cfg-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listeners:\n  - { name: web, port: 8080, pool: app }\npools:\n  app:\n    healthCheck: { interval: fast }\n    backends: [ { id: n1, url: "ftp://x" } ]\n');
    const r = await runCli(['check-config', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('pools.app.healthCheck.interval: expected a duration like 5s, got "fast" (line 5)');
    expect(r.stderr).toMatch(/pools\.app\.backends\[0\]\.url: .*\(line 6\)/);
    expect((await runCli(['check-config'])).code).toBe(2);
    expect((await runCli(['no-such-command'])).code).toBe(2);
  });
});
