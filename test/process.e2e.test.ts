import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { request } from 'undici';
import { startBackend, deadPort } from './helpers/backends.js';

const CLI = resolve('dist/cli/main.js');

export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => done({ code: code ?? -1, stdout, stderr }));
  });
}

/** Start `lb start -c FILE` as a real process; resolves once it logs that it listens. */
export async function startLbProcess(file: string): Promise<{ proc: ChildProcess; logs: () => string; exited: Promise<number> }> {
  const proc = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number>((r) => proc.on('exit', (code) => r(code ?? -1)));
  onTestFinished(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const deadline = Date.now() + 15_000;
  while (!/listening on/.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`lb did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, logs: () => out, exited };
}

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
