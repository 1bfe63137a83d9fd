/**
 * Fail-over benchmark: three backend processes behind a real `lb` process; 60 cookie clients
 * (half GET, half POST) run a steady bounded load; one backend is SIGKILLed; lb's own log line
 * gives the moment it was marked down. Prints detection time and an error tally per phase, once
 * with active checks only and once with passive checks too.
 *
 *   node --import tsx bench/failover.ts [--seconds 6]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { freePort } from './peers.js';


const args = process.argv.slice(2);

if (args[0] === 'backend') {
  const id = args[1];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ id })));
  });
  server.listen(Number(args[2] ?? 0), '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
} else {
  await main();
}

function firstLine(p: ChildProcess): Promise<string> {
  return new Promise((res) => p.stdout!.once('data', (d: Buffer) => res(d.toString().trim())));
}

interface Sample {
  at: number;
  method: string;
  status: number;
  ms: number;
}

async function scenario(name: string, passive: boolean, seconds: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lb-failover-'));
  const procs: ChildProcess[] = [];
  try {
    const ports: number[] = [];
    for (const id of ['n1', 'n2', 'n3']) {
      const p = spawn(process.execPath, ['--import', 'tsx', resolve('bench/failover.ts'), 'backend', id], { stdio: ['ignore', 'pipe', 'inherit'] });
      procs.push(p);
      ports.push(Number(await firstLine(p)));
    }
    const port = await freePort();
    const hc = { interval: 1000, timeout: 500, fall: 3, rise: 2 };
    writeFileSync(join(dir, 'lb.yaml'), `
listeners: [ { name: web, host: 127.0.0.1, port: ${port}, pool: app } ]
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["failover-bench-secret"] } }
    healthCheck: { path: /health, interval: ${hc.interval}ms, timeout: ${hc.timeout}ms, rise: ${hc.rise}, fall: ${hc.fall} }
    passiveHealth: { enabled: ${passive}, consecutiveErrors: 3, cooldown: 30s }
    backends:
${ports.map((p, i) => `      - { id: n${i + 1}, url: "http://127.0.0.1:${p}" }`).join('\n')}
admin: { enabled: false }
state: { file: "${dir}/state.json" }
`);
    const lb = spawn(process.execPath, [resolve('dist/cli/main.js'), 'start', '-c', join(dir, 'lb.yaml')], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(lb);
    let downAt = 0;
    let out = '';
    lb.stdout!.on('data', (d: Buffer) => {
      out += d;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line.includes('"backend.health"') && line.includes('"to":"unhealthy"') && !downAt) downAt = Date.now();
      }
    });
    for (let i = 0; i < 100; i++) {
      const ok = await request(`http://127.0.0.1:${port}/`).then((r) => (r.body.dump(), true), () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, hc.interval * 2.5)); // every backend checked healthy

    const agent = new Agent({ connections: 8, headersTimeout: 10_000, bodyTimeout: 10_000 });
    const samples: Sample[] = [];
    let running = true;
    const client = async (i: number): Promise<void> => {
      let cookie = '';
      const method = i % 2 ? 'POST' : 'GET';
      while (running) {
        const at = Date.now();
        try {
          const r = await request(`http://127.0.0.1:${port}/`, { method, dispatcher: agent, headers: cookie ? { cookie } : {}, body: method === 'POST' ? 'x'.repeat(64) : undefined });
          await r.body.dump();
          const sc = r.headers['set-cookie'];
          if (sc) cookie = String(sc).split(';')[0];
          samples.push({ at, method, status: r.statusCode, ms: Date.now() - at });
        } catch {
          samples.push({ at, method, status: 0, ms: Date.now() - at });
        }
        await new Promise((r) => setTimeout(r, 10)); // bounded: ≤ ~100 req/s per client
      }
    };
    const loops = Array.from({ length: 60 }, (_, i) => client(i));
    await new Promise((r) => setTimeout(r, 1500));
    const killedAt = Date.now();
    procs[0].kill('SIGKILL');
    await new Promise((r) => setTimeout(r, seconds * 1000));
    running = false;
    await Promise.all(loops);
    await agent.close();

    const detect = downAt ? downAt - killedAt : NaN;
    const phase = (from: number, to: number) => samples.filter((s) => s.at >= from && s.at < to);
    const tally = (ss: Sample[]) => {
      const get = ss.filter((s) => s.method === 'GET');
      const post = ss.filter((s) => s.method === 'POST');
      const bad = (xs: Sample[]) => xs.filter((s) => s.status !== 200);
      const hung = ss.filter((s) => s.status === 0).length;
      return `${ss.length} | ${bad(get).length} | ${bad(post).filter((s) => s.status === 502).length} | ${bad(post).filter((s) => s.status !== 502).length + hung} | ${Math.max(0, ...ss.map((s) => s.ms))}`;
    };
    const end = Math.max(...samples.map((s) => s.at)) + 1;
    return [
      `| ${name} | before kill | ${tally(phase(0, killedAt))} | |`,
      `| ${name} | detection (${detect} ms) | ${tally(phase(killedAt, downAt || end))} | bound interval×fall+timeout = ${hc.interval * hc.fall + hc.timeout} ms |`,
      `| ${name} | after detection | ${tally(phase(downAt || end, end))} | |`,
    ].join('\n');
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const seconds = Number(args[args.indexOf('--seconds') + 1] || 0) || 6;
  const rows = [await scenario('active only', false, seconds), await scenario('active + passive', true, seconds)];
  console.log(
    [
      `node ${process.version}; 60 clients (30 GET, 30 POST with a 64-byte body), cookie affinity, 3 backends, n1 SIGKILLed; healthCheck interval 1s, timeout 500ms, fall 3, rise 2; passive: 3 consecutive errors.`,
      '',
      '| checks | phase | requests | GET errors | POST 502 | other errors/hangs | slowest ms | note |',
      '|---|---|---:|---:|---:|---:|---:|---|',
      ...rows,
    ].join('\n'),
  );
}
