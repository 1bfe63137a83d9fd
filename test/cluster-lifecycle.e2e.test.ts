import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startBackend, deadPort, type TestBackend } from './helpers/backends.js';
import { api } from './helpers/admin.js';

const CLI = resolve('dist/cli/main.js');
const TOKEN = 'cluster-token-123';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `lb start -c FILE` as a process, not waiting for anything (the test decides what to wait for). */
function spawnLb(file: string, command = 'start'): { pid: number; logs: () => string; exited: Promise<number | string>; signal: (s: NodeJS.Signals) => void } {
  const proc = spawn(process.execPath, [CLI, command, '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | string>((r) => proc.on('exit', (code, sig) => r(code ?? sig ?? -1)));
  onTestFinished(() => {
    // Workers log their pid once ready; any still alive after the test are killed by pid.
    for (const m of out.matchAll(/"workerPid":(\d+)/g)) {
      try {
        process.kill(Number(m[1]), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return { pid: proc.pid!, logs: () => out, exited, signal: (s) => proc.kill(s) };
}

/** Resolves to what `p` resolved to, or to `timeout` after `ms`. */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> => Promise.race([p, sleep(ms).then(() => 'timeout' as const)]);

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(5);
  }
}

/** One request on a fresh connection (the kernel spreads them over the workers). */
async function fetchOnce(url: string, cookie?: string): Promise<{ status: number; id: string; cookie?: string }> {
  const agent = new Agent({ pipelining: 0 });
  try {
    const r = await request(url, { headers: cookie ? { cookie, connection: 'close' } : { connection: 'close' }, dispatcher: agent });
    const text = await r.body.text();
    const sc = r.headers['set-cookie'];
    return { status: r.statusCode, id: r.statusCode === 200 ? (JSON.parse(text) as { id: string }).id : '', cookie: sc ? String(sc).split(';')[0] : undefined };
  } finally {
    await agent.close();
  }
}

const readyLines = (logs: string): number => (logs.match(/"cluster\.worker\.ready"/g) ?? []).length;

async function clusterYaml(extra = '', affinity = '{ mode: none }', ids = ['n1']): Promise<{ file: string; dir: string; port: number; adminPort: number; yaml: string; bs: TestBackend[] }> {
  const bs = await Promise.all(ids.map((id) => startBackend(id)));
  const dir = mkdtempSync(join(tmpdir(), 'lb-life-'));
  const port = await deadPort();
  const adminPort = await deadPort();
  const file = join(dir, 'lb.yaml');
  const yaml = `
workers: 2
listeners: [ { name: web, host: 127.0.0.1, port: ${port}, pool: app } ]
pools:
  app:
    affinity: ${affinity}
    balance: round-robin
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
admin: { host: 127.0.0.1, port: ${adminPort}, token: ${TOKEN} }
state: { file: "${dir}/state.json" }
timeouts: { gracePeriod: 1s }
${extra}`;
  writeFileSync(file, yaml);
  return { file, dir, port, adminPort, yaml, bs };
}

describe('workers: 2, lifecycle', () => {
  it.each([0, 100, 300])('SIGTERM %i ms after the workers are forked: the primary and every worker exit', async (delay) => {
    const { file } = await clusterYaml();
    const lb = spawnLb(file);
    await waitFor(() => /"cluster\.start"/.test(lb.logs()), 15_000);
    await sleep(delay);
    lb.signal('SIGTERM');
    expect(await within(lb.exited, 8000)).toBe(0);
    expect(lb.logs()).not.toMatch(/"cluster\.worker\.killed"/);
    // No worker went on serving after the stop.
    expect(lb.logs()).not.toMatch(/"cluster\.worker\.died"/);
  });

  it('a replacement worker runs the config the primary runs, not the file as it is now', async () => {
    const { file, port, yaml } = await clusterYaml('', '{ mode: cookie, cookie: { secrets: ["secret-AAAAAAAAAAAA"] } }', ['n1', 'n2', 'n3']);
    const lb = spawnLb(file);
    await waitFor(() => readyLines(lb.logs()) === 2, 15_000);
    const base = `http://127.0.0.1:${port}/`;
    const users = await Promise.all(Array.from({ length: 20 }, () => fetchOnce(base)));

    // Edited, not reloaded: a new cookie secret. Then a worker dies.
    writeFileSync(file, yaml.replace('secret-AAAAAAAAAAAA', 'secret-BBBBBBBBBBBB'));
    process.kill(Number(/"workerPid":(\d+)/.exec(lb.logs())![1]), 'SIGKILL');
    await waitFor(() => readyLines(lb.logs()) === 3, 15_000);
    for (let round = 0; round < 3; round++) {
      const again = await Promise.all(users.map((u) => fetchOnce(base, u.cookie)));
      again.forEach((a, i) => expect(a.id).toBe(users[i].id)); // nobody logged out
    }

    // The file is now invalid (a reload would be rejected): a worker dies and is still replaced.
    writeFileSync(file, 'workers: 2\npools: { app: { balance: fastest } }\n');
    const pids = [...lb.logs().matchAll(/"workerPid":(\d+)/g)].map((m) => Number(m[1]));
    process.kill(pids[pids.length - 1], 'SIGKILL');
    await waitFor(() => readyLines(lb.logs()) === 4, 15_000);
    for (const u of users) expect((await fetchOnce(base, u.cookie)).id).toBe(u.id);
    lb.signal('SIGTERM');
    expect(await within(lb.exited, 8000)).toBe(0);
  });

  it('lb demo with workers: 2 starts the demo servers once, in the primary', async () => {
    const [p, a, b1, b2] = await Promise.all([deadPort(), deadPort(), deadPort(), deadPort()]);
    const dir = mkdtempSync(join(tmpdir(), 'lb-life-'));
    const file = join(dir, 'demo.yaml');
    writeFileSync(
      file,
      `workers: 2
listeners: [ { name: web, host: 127.0.0.1, port: ${p}, pool: app } ]
pools:
  app:
    affinity: { mode: cookie }
    backends:
      - { id: node-1, url: "http://127.0.0.1:${b1}" }
      - { id: node-2, url: "http://127.0.0.1:${b2}" }
admin: { host: 127.0.0.1, port: ${a} }
state: { file: ${dir}/s.json }
timeouts: { gracePeriod: 1s }
`,
    );
    const lb = spawnLb(file, 'demo');
    await waitFor(() => readyLines(lb.logs()) === 2 || /EADDRINUSE|worker\.died/.test(lb.logs()), 15_000);
    expect(lb.logs()).not.toMatch(/EADDRINUSE|worker\.died/);
    expect(lb.logs().match(/lb demo:/g)).toHaveLength(1);
    const r = await request(`http://127.0.0.1:${p}/`);
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toMatch(/node-[12]/);
    lb.signal('SIGTERM');
    expect(await within(lb.exited, 8000)).toBe(0);
  });

  it('health checks run in the primary only, also after an admin add and a reload', async () => {
    const added = await startBackend('n3');
    const { file, adminPort, bs } = await clusterYaml('', '{ mode: none }\n    healthCheck: { path: /health, interval: 250ms, timeout: 200ms, rise: 1, fall: 1 }', ['n1', 'n2']);
    const lb = spawnLb(file);
    await waitFor(() => readyLines(lb.logs()) === 2, 15_000);
    const admin = `http://127.0.0.1:${adminPort}`;
    expect((await api(admin, 'POST', '/api/v1/backends', { token: TOKEN, body: { id: 'n3', url: added.url } })).status).toBeLessThan(300);
    expect((await api(admin, 'POST', '/api/v1/reload', { token: TOKEN })).status).toBe(200);
    // n3 was added live, n1 was there at start (and reloaded).
    const probes = (b: TestBackend): number => b.seen.filter((r) => r.url === '/health').length;
    const before = [added, bs[0]].map(probes);
    await sleep(2000);
    // One checker probes every 250 ms ± 20 %: at most 11 in 2 s; one per process would be ~24.
    for (const [i, b] of [added, bs[0]].entries()) {
      expect(probes(b) - before[i]).toBeLessThanOrEqual(11);
      expect(probes(b) - before[i]).toBeGreaterThanOrEqual(4);
    }
    lb.signal('SIGTERM');
    expect(await within(lb.exited, 8000)).toBe(0);
  });

  it('a listener port already in use: lb exits 1 with the error, as with workers: 1, instead of forking forever', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    onTestFinished(() => void blocker.close());
    const taken = (blocker.address() as net.AddressInfo).port;
    const { file, yaml } = await clusterYaml();
    writeFileSync(file, yaml.replace(/port: \d+, pool: app/, `port: ${taken}, pool: app`));
    const lb = spawnLb(file);
    expect(await within(lb.exited, 10_000)).toBe(1);
    expect(lb.logs()).toMatch(/lb start: .*EADDRINUSE/);
    expect(lb.logs()).toMatch(/"cluster\.start\.failed".*"code":1/);
    expect(lb.logs()).not.toMatch(/"cluster\.worker\.died"/);
  });
});
