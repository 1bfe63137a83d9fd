/**
 * WebSocket benchmark: 200 connections echoing 32-byte messages, side by side in one run:
 *   direct        clients → echo backend
 *   lb            clients → lb (frame-tracking tunnel, the shipped design) → backend
 *   ws-terminate  clients → a proxy that terminates both sides with `ws` → backend (the design lb did not take)
 *   nginx         clients → nginx 1 worker → backend (when nginx is installed)
 * Each proxy is pinned to CPU 0, the backend and load generator to CPU 1. Reported: echoes/s, ratio
 * to direct, and the proxy's own CPU time per echo (utime+stime from /proc).
 * Then the idle cost: RSS of lb per open idle tunnel at N open WebSockets.
 *
 *   node --import tsx bench/ws.ts [--seconds 8] [--idle 9900]
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { ensurePeers, freePort } from './peers.js';

const args = process.argv.slice(2);
const role = args[0];

// ---- child roles -------------------------------------------------------------------------
if (role === 'backend') {
  const server = http.createServer((_q, s) => s.end('ok'));
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => ws.on('message', (d, bin) => ws.send(d, { binary: bin })));
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
} else if (role === 'terminate') {
  // The alternative design: terminate WebSockets on both sides with `ws` and relay messages.
  const target = args[1];
  const server = http.createServer((_q, s) => s.end('ok'));
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    const up = new WebSocket(target + req.url, { perMessageDeflate: false });
    up.on('open', () =>
      wss.handleUpgrade(req, socket, head, (client) => {
        client.on('message', (d, bin) => up.send(d, { binary: bin }));
        up.on('message', (d, bin) => client.send(d, { binary: bin }));
        client.on('close', () => up.close());
        up.on('close', () => client.close());
      }),
    );
    up.on('error', () => socket.destroy());
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
} else if (role === 'load') {
  // Echo loop: N connections, each sends 32 bytes and sends again on every echo.
  const [url, conns, seconds] = [args[1], Number(args[2]), Number(args[3])];
  const msg = Buffer.alloc(32, 'x');
  let count = 0;
  let counting = false;
  let opened = 0;
  const all: WebSocket[] = [];
  for (let i = 0; i < conns; i++) {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    all.push(ws);
    ws.on('open', () => {
      if (++opened === conns) start();
    });
    ws.on('message', () => {
      if (counting) count++;
      ws.send(msg);
    });
    ws.on('error', (e) => {
      console.error(String(e));
      process.exit(1);
    });
  }
  function start(): void {
    for (const ws of all) ws.send(msg);
    setTimeout(() => {
      counting = true;
      process.stdout.write('start\n');
      setTimeout(() => {
        counting = false;
        process.stdout.write(`${JSON.stringify({ echoes: count, perSec: count / seconds })}\n`);
        for (const ws of all) ws.terminate();
        process.exit(0);
      }, seconds * 1000);
    }, 1000);
  }
} else if (role === 'idle') {
  // Open N idle WebSockets and keep them; report when all are open.
  const [url, n] = [args[1], Number(args[2])];
  let opened = 0;
  const open = (i: number): void => {
    if (i >= n) return;
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on('open', () => {
      if (++opened === n) process.stdout.write('open\n');
      open(i + 64);
    });
    ws.on('error', (e) => {
      console.error(String(e));
      process.exit(1);
    });
  };
  for (let i = 0; i < 64; i++) open(i);
} else {
  await main();
}

// ---- orchestration -----------------------------------------------------------------------
function child(cmd: string, argv: string[], cpu: number): ChildProcess {
  return spawn('taskset', ['-c', String(cpu), cmd, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
}

function self(r: string, argv: string[], cpu: number): ChildProcess {
  return child(process.execPath, ['--import', 'tsx', resolve('bench/ws.ts'), r, ...argv], cpu);
}

function line(p: ChildProcess, match: RegExp = /./): Promise<string> {
  return new Promise((res, rej) => {
    let buf = '';
    const on = (d: Buffer): void => {
      buf += d;
      for (const l of buf.split('\n')) {
        if (match.test(l)) {
          p.stdout!.off('data', on);
          return res(l.trim());
        }
      }
    };
    p.stdout!.on('data', on);
    p.once('exit', (c) => rej(new Error(`exited ${c} before printing ${match}`)));
  });
}

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime+stime in clock ticks (100 Hz)
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => http.get({ host: '127.0.0.1', port, path: '/' }, (res) => (res.resume(), r(true))).on('error', () => r(false)));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} never answered`);
}

interface Row {
  name: string;
  perSec: number;
  cpuUsPerEcho?: number;
}

async function measure(name: string, url: string, pid: number | undefined, seconds: number): Promise<Row> {
  const load = self('load', [url, '200', String(seconds)], 1);
  await line(load, /^start$/);
  const c0 = pid ? cpuMs(pid) : 0;
  const out = JSON.parse(await line(load, /^\{/)) as { echoes: number; perSec: number };
  const c1 = pid ? cpuMs(pid) : 0;
  return { name, perSec: out.perSec, cpuUsPerEcho: pid ? ((c1 - c0) * 1000) / out.echoes : undefined };
}

async function main(): Promise<void> {
  const seconds = Number(args[args.indexOf('--seconds') + 1] || 0) || 8;
  const idleN = Number(args[args.indexOf('--idle') + 1] || 0) || 9900;
  ensurePeers([{ bin: '/usr/sbin/nginx', pkg: 'nginx-light' }]);
  const dir = mkdtempSync(join(tmpdir(), 'lb-bench-ws-'));
  const procs: ChildProcess[] = [];
  const stop = (): void => procs.forEach((p) => p.exitCode === null && p.kill('SIGKILL'));
  process.on('exit', stop);
  try {
    const backend = self('backend', [], 1);
    procs.push(backend);
    const bport = Number(await line(backend));

    const lbPort = await freePort();
    writeFileSync(join(dir, 'lb.yaml'), `
listeners:
  - { name: ws, host: 127.0.0.1, port: ${lbPort}, pool: app }
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["bench-secret-value"] } }
    backends: [ { id: n1, url: "http://127.0.0.1:${bport}" } ]
log: { level: warn }
`);
    const lb = child(process.execPath, [resolve('dist/cli/main.js'), 'start', '-c', join(dir, 'lb.yaml')], 0);
    procs.push(lb);
    await waitPort(lbPort);

    const term = self('terminate', [`ws://127.0.0.1:${bport}`], 0);
    procs.push(term);
    const tport = Number(await line(term));

    let nginxPid: number | undefined;
    let nginxPort = 0;
    let nginxVersion = 'not installed';
    if (existsSync('/usr/sbin/nginx')) {
      nginxPort = await freePort();
      nginxVersion = execFileSync('/usr/sbin/nginx', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) || 'nginx';
      writeFileSync(join(dir, 'nginx.conf'), `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err warn;
events { worker_connections 30000; }
http { access_log off;
  upstream app { server 127.0.0.1:${bport}; keepalive 64; }
  server { listen 127.0.0.1:${nginxPort};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; proxy_read_timeout 1h; } } }
`);
      const ng = child('/usr/sbin/nginx', ['-c', join(dir, 'nginx.conf'), '-e', join(dir, 'nginx.err')], 0);
      procs.push(ng);
      await waitPort(nginxPort);
      // The worker is the child of the master: measure its CPU.
      nginxPid = Number(execFileSync('pgrep', ['-P', String(ng.pid)], { encoding: 'utf8' }).trim().split('\n')[0]);
    }

    const rows: Row[] = [];
    rows.push(await measure('direct', `ws://127.0.0.1:${bport}/`, undefined, seconds));
    rows.push(await measure('lb (frame-tracking tunnel)', `ws://127.0.0.1:${lbPort}/`, lb.pid, seconds));
    rows.push(await measure('ws-terminate (alternative)', `ws://127.0.0.1:${tport}/`, term.pid, seconds));
    if (nginxPid) rows.push(await measure('nginx 1 worker', `ws://127.0.0.1:${nginxPort}/`, nginxPid, seconds));

    // Idle cost: RSS per open idle tunnel.
    const before = rssKiB(lb.pid!);
    const idle = self('idle', [`ws://127.0.0.1:${lbPort}/`, String(idleN)], 1);
    procs.push(idle);
    await line(idle, /^open$/);
    await new Promise((r) => setTimeout(r, 3000));
    const after = rssKiB(lb.pid!);
    const termBefore = rssKiB(term.pid!);
    const idle2 = self('idle', [`ws://127.0.0.1:${tport}/`, String(idleN)], 1);
    procs.push(idle2);
    await line(idle2, /^open$/);
    await new Promise((r) => setTimeout(r, 3000));
    const termAfter = rssKiB(term.pid!);

    const direct = rows[0].perSec;
    const out = [
      `| target | echoes/s | ratio to direct | proxy CPU µs/echo |`,
      `|---|---:|---:|---:|`,
      ...rows.map((r) => `| ${r.name} | ${Math.round(r.perSec)} | ${(r.perSec / direct).toFixed(2)} | ${r.cpuUsPerEcho === undefined ? '–' : r.cpuUsPerEcho.toFixed(1)} |`),
      '',
      `Idle tunnels: lb RSS ${before} KiB → ${after} KiB with ${idleN} open: ${((after - before) / idleN).toFixed(2)} KiB per tunnel; ` +
        `ws-terminate ${termBefore} KiB → ${termAfter} KiB: ${((termAfter - termBefore) / idleN).toFixed(2)} KiB per connection.`,
      `node ${process.version}, ws ${JSON.parse(readFileSync('node_modules/ws/package.json', 'utf8')).version}, ${nginxVersion.trim()}, ${seconds}s per target, 200 connections, 32-byte messages.`,
    ].join('\n');
    console.log(out);
  } finally {
    stop();
  }
}
