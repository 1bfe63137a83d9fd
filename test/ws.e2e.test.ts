import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { startBackend, deadPort } from './helpers/backends.js';
import { startWsBackend, openWs, echo, type WsBackend } from './helpers/ws.js';
import { startLb, type RunningLb } from './helpers/lb.js';
import { JarClient, testAgent } from './helpers/client.js';
import { makeCert } from './helpers/certs.js';
import { startLbProcess } from './helpers/process.js';

function yaml(bs: Array<{ id: string; url: string }>, extra = '', pool = ''): string {
  return `
listeners:
  - { name: web, port: 0, host: 127.0.0.1, pool: app }
  - { name: ws, port: 0, host: 127.0.0.1, pool: app }
pools:
  app:
    affinity:
      mode: cookie
      cookie: { secrets: ["ws-secret-value-1"], maxIdle: 30m }
    balance: round-robin
${pool}
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
${extra}
`;
}

const wsUrl = (lb: RunningLb, path = '/socket', listener = 'ws'): string => `ws://127.0.0.1:${lb.port(listener)}${path}`;
const settle = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('WebSockets', () => {
  it('500 concurrent WebSockets with cookies reach their pinned backend and echo', async () => {
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startWsBackend(id)));
    const lb = await startLb(yaml(bs));
    const agent = testAgent({ connections: 50 });
    const clients = await Promise.all(
      Array.from({ length: 500 }, async (_, i) => {
        const c = new JarClient(lb.url, agent);
        const pinned = (await c.fetch('/')).json().id as string;
        const s = await openWs(wsUrl(lb, `/chat?i=${i}`), { cookie: c.cookieHeader()! });
        return { i, pinned, s };
      }),
    );
    const perBackend = new Map<string, number>();
    for (const c of clients) {
      expect(c.s.backend).toBe(c.pinned);
      expect(c.s.setCookie).toEqual([]); // a valid cookie is not reissued on the 101
      perBackend.set(c.pinned, (perBackend.get(c.pinned) ?? 0) + 1);
    }
    expect([...perBackend.values()].sort()).toEqual([166, 167, 167]);
    expect(bs.map((b) => lb.app.registry.get(b.id)!.websockets).reduce((a, n) => a + n)).toBe(500);
    const answers = await Promise.all(clients.map((c) => echo(c.s.ws, `hello ${c.i}`)));
    answers.forEach((a, i) => expect(a.toString()).toBe(`hello ${i}`));
    for (const c of clients) c.s.ws.close(1000);
    await Promise.all(clients.map((c) => c.s.closed));
    await settle(() => lb.app.websockets.size === 0);
    expect(bs.map((b) => lb.app.registry.get(b.id)!.websockets)).toEqual([0, 0, 0]);
  });

  it('passes a 16 MiB message and a fragmented message byte-identical, both ways', async () => {
    const b = await startWsBackend('n1');
    const lb = await startLb(yaml([b]));
    const s = await openWs(wsUrl(lb));
    const big = randomBytes(16 * 1024 * 1024);
    const back = await echo(s.ws, big);
    expect(back.equals(big)).toBe(true);
    expect(b.received[0].equals(big)).toBe(true);
    // One message in three fragments (RFC 6455 §5.4), interleaved with a ping (a control frame).
    const parts = [randomBytes(1000), randomBytes(70_000), randomBytes(5)];
    const got = new Promise<Buffer>((r) => s.ws.once('message', (d: Buffer) => r(d)));
    s.ws.send(parts[0], { fin: false, binary: true });
    s.ws.ping();
    s.ws.send(parts[1], { fin: false, binary: true });
    s.ws.send(parts[2], { fin: true, binary: true });
    const whole = Buffer.concat(parts);
    expect((await got).equals(whole)).toBe(true);
    expect(b.received[1].equals(whole)).toBe(true);
  });

  it('gives a client without a cookie one on the 101; its next HTTP request reaches the same backend', async () => {
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startWsBackend(id)));
    const lb = await startLb(yaml(bs));
    const agent = testAgent();
    for (let i = 0; i < 6; i++) {
      const s = await openWs(wsUrl(lb, '/socket', 'web'));
      expect(s.setCookie).toHaveLength(1);
      expect(s.setCookie[0]).toMatch(/^lb_affinity=[A-Za-z0-9_-]{66}; Path=\/; HttpOnly; SameSite=Lax/);
      const c = new JarClient(lb.url, agent);
      c.jar.set('lb_affinity', s.setCookie[0].split(';')[0].slice('lb_affinity='.length));
      const r = await c.fetch('/after');
      expect(r.json().id).toBe(s.backend);
      expect(r.headers['set-cookie']).toBeUndefined();
      s.ws.close();
    }
    // The access log marks upgrades.
    expect(lb.logs().filter((l) => l.websocket === true && l.status === 101)).toHaveLength(6);
  });

  it('works on an HTTPS listener with X-Forwarded-* on the upgrade', async () => {
    const b = await startWsBackend('n1');
    const cert = makeCert();
    const lb = await startLb(`
listeners:
  - { name: tls, protocol: https, port: 0, host: 127.0.0.1, pool: app, tls: { cert: ${cert.cert}, key: ${cert.key} } }
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["ws-secret-value-1"] } }
    backends: [ { id: n1, url: "${b.url}" } ]
`);
    const ws = new WebSocket(`wss://127.0.0.1:${lb.port('tls')}/secure`, { rejectUnauthorized: false, headers: { 'x-forwarded-for': '203.0.113.9' } });
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    expect((await echo(ws, 'over tls')).toString()).toBe('over tls');
    ws.close();
    const seen = b.upgrades.find((x) => x[':path'] === '/secure')!;
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1'); // untrusted peer: replaced
    expect(seen['x-forwarded-port']).toBe(String(lb.port('tls')));
    expect(seen['x-request-id']).toMatch(/./);
  });

  it('relays a refused upgrade as a plain response and tunnels nothing afterwards', async () => {
    const after: Buffer[] = [];
    let backendSocketClosed = false;
    const b = await startBackend('n1');
    b.server.on('upgrade', (_req, socket) => {
      onTestFinished(() => socket.destroy());
      socket.on('end', () => (backendSocketClosed = true)); // lb ended its side (upgraded sockets are half-open here)
      socket.on('data', (d: Buffer) => after.push(d));
      socket.write('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nnot you');
    });
    const lb = await startLb(yaml([b]));
    const sock = net.connect(lb.port('ws'), '127.0.0.1');
    let reply = '';
    sock.on('data', (d) => (reply += d));
    const closed = new Promise((r) => sock.on('close', r));
    sock.write('GET /socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await settle(() => reply.includes('not you'));
    // What a smuggler would send next: a request meant to reach the backend unchecked.
    sock.write('GET /admin HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(reply).toMatch(/set-cookie: lb_affinity=/i);
    expect(reply.match(/HTTP\/1\.1/g)).toHaveLength(1);
    expect(Buffer.concat(after).toString()).not.toContain('/admin');
    expect(lb.app.websockets.size).toBe(0);
    expect(lb.app.registry.get('n1')!.inFlight).toBe(0);
    await settle(() => backendSocketClosed); // lb let go of the backend connection too
  });

  it('answers other upgrades as plain requests and WebSocket upgrades whose backend is down 502, without a tunnel', async () => {
    const lb = await startLb(yaml([{ id: 'n1', url: `http://127.0.0.1:${await deadPort()}` }]));
    const raw = (upgrade: string): Promise<string> =>
      new Promise((r) => {
        const sock = net.connect(lb.port('ws'), '127.0.0.1');
        let reply = '';
        sock.on('data', (d) => (reply += d));
        sock.on('close', () => r(reply));
        // `close` too: a plain answer would otherwise leave the connection open for the next request.
        sock.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: ${upgrade}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      });
    expect(await raw('h2c')).toMatch(/^HTTP\/1\.1 502 /); // a plain GET (RFC 9110 §7.8), its backend down
    expect(await raw('websocket')).toMatch(/^HTTP\/1\.1 502 /);
    expect(lb.app.websockets.size).toBe(0);
  });

  it('a WebSocket whose 101 comes after its backend went to maint is closed 1012 as soon as it opens', async () => {
    const b = await startBackend('late');
    // The backend takes 800 ms to accept: maint comes while the upgrade is in flight.
    const wss = new WebSocketServer({ server: b.server, verifyClient: (_info, done) => void setTimeout(() => done(true), 800) });
    wss.on('connection', (ws) => ws.on('error', () => undefined));
    onTestFinished(() => {
      for (const c of wss.clients) c.terminate();
      wss.close();
    });
    const lb = await startLb(yaml([b]));
    const opening = openWs(wsUrl(lb));
    await new Promise((r) => setTimeout(r, 300));
    await lb.app.control!.maint('late');
    const s = await opening;
    const closed = await Promise.race([s.closed, new Promise<{ code: number }>((r) => setTimeout(() => r({ code: -1 }), 3000))]);
    expect(closed.code).toBe(1012);
    await settle(() => lb.app.registry.get('late')!.websockets === 0);
  });

  it('closes clients when their backend crashes and the backend side when a client closes; nothing leaks', async () => {
    const [n1, n2] = await Promise.all(['n1', 'n2'].map((id) => startWsBackend(id)));
    const lb = await startLb(yaml([n1, n2]));
    const open = await Promise.all(Array.from({ length: 20 }, () => openWs(wsUrl(lb))));
    const on1 = open.filter((s) => s.backend === 'n1');
    const on2 = open.filter((s) => s.backend === 'n2');
    expect(on1).toHaveLength(10);
    await n1.crash();
    await Promise.all(on1.map((s) => s.closed));
    expect(on2.every((s) => s.ws.readyState === WebSocket.OPEN)).toBe(true);
    await settle(() => lb.app.registry.get('n1')!.websockets === 0);
    // Clients close: the backend sees each close frame (1000) relayed.
    for (const s of on2) s.ws.close(1000);
    await settle(() => n2.closes.length === 10);
    expect(n2.closes).toEqual(Array(10).fill(1000));
    await settle(() => lb.app.websockets.size === 0);
    expect(lb.app.registry.get('n2')!.websockets).toBe(0);
    // No socket left open on lb's WebSocket listener or on the surviving backend.
    const count = (srv: { getConnections(cb: (e: Error | null, n: number) => void): void }): Promise<number> => new Promise((r) => srv.getConnections((_e, n) => r(n)));
    await settle(() => n2.wss.clients.size === 0);
    expect(await count(n2.server)).toBe(0);
  });

  it('closes a tunnel idle longer than timeouts.websocketIdle with 1001, both sides', async () => {
    const b = await startWsBackend('n1');
    const lb = await startLb(yaml([b], 'timeouts: { websocketIdle: 1s }'));
    const quiet = await openWs(wsUrl(lb));
    const chatty = await openWs(wsUrl(lb));
    const talk = setInterval(() => chatty.ws.send('still here'), 200);
    onTestFinished(() => clearInterval(talk));
    expect((await quiet.closed).code).toBe(1001);
    await settle(() => b.closes.includes(1001));
    expect(chatty.ws.readyState).toBe(WebSocket.OPEN);
    expect(lb.app.registry.get('n1')!.websockets).toBe(1);
  });

  it('keeps a session live while its WebSocket is open, beyond maxIdle', async () => {
    let now = 1_700_000_000_000;
    const [n1, n2] = await Promise.all(['n1', 'n2'].map((id) => startWsBackend(id)));
    const lb = await startLb(yaml([n1, n2]).replace('maxIdle: 30m', 'maxIdle: 1m'), { now: () => now });
    const s = await openWs(wsUrl(lb));
    const cookie = s.setCookie[0].split(';')[0];
    expect(lb.app.balancer.liveSessions(lb.app.registry.get(s.backend)!)).toBe(1);
    now += 10 * 60_000; // ten maxIdles later, the WebSocket still open
    expect(lb.app.balancer.liveSessions(lb.app.registry.get(s.backend)!)).toBe(1);
    const r = await new JarClient(lb.url, testAgent()).fetch('/', { headers: { cookie } });
    expect(r.json().id).toBe(s.backend); // the idle-by-its-clock cookie is honoured: the session is held
    s.ws.close();
    await settle(() => lb.app.websockets.size === 0);
    now += 2 * 60_000;
    lb.app.balancer.sweep();
    expect(lb.app.balancer.liveSessions(lb.app.registry.get(s.backend)!)).toBe(0);
  });

  it('at a drain deadline sends 1012 to the backend\'s clients, no faster than closeRate', async () => {
    const [n1, n2] = await Promise.all(['n1', 'n2'].map((id) => startWsBackend(id)));
    const lb = await startLb(yaml([n1, n2], 'websocket: { closeRate: 20 }'));
    const open = await Promise.all(Array.from({ length: 40 }, () => openWs(wsUrl(lb))));
    const on1 = open.filter((s) => s.backend === 'n1');
    expect(on1).toHaveLength(20);
    await lb.app.control!.drain('n1', { deadline: '1s' });
    expect(lb.app.drains.progress(lb.app.registry.get('n1')!)).toMatchObject({ websockets: 20, sessions: 20 });
    const closes = await Promise.all(on1.map((s) => s.closed));
    expect(closes.map((c) => c.code)).toEqual(Array(20).fill(1012));
    expect(n1.closes).toEqual(Array(20).fill(1012)); // the backend side is closed properly too
    // 20 closes at 20/s: one per 50 ms slot, so first to last spans at least 18 slots.
    const at = closes.map((c) => c.at).sort((a, b) => a - b);
    expect(at[19] - at[0]).toBeGreaterThanOrEqual(18 * 50 - 5);
    expect(open.filter((s) => s.backend === 'n2').every((s) => s.ws.readyState === WebSocket.OPEN)).toBe(true);
    await settle(() => lb.app.registry.get('n1')!.adminState === 'drained');
  });

  it('on SIGTERM sends 1001 Going Away to every client and exits 0', async () => {
    const b = await startWsBackend('n1');
    const dir = mkdtempSync(join(tmpdir(), 'lb-ws-'));
    const file = join(dir, 'lb.yaml');
    const port = await deadPort();
    writeFileSync(file, `
listeners:
  - { name: ws, host: 127.0.0.1, port: ${port}, pool: app }
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["ws-secret-value-1"] } }
    backends: [ { id: n1, url: "${b.url}" } ]
timeouts: { gracePeriod: 5s }

`);
    const lbp = await startLbProcess(file);
    const open: Awaited<ReturnType<typeof openWs>>[] = await Promise.all(Array.from({ length: 10 }, () => openWs(`ws://127.0.0.1:${port}/`)));
    lbp.proc.kill('SIGTERM');
    const closes = await Promise.all(open.map((s) => s.closed));
    expect(closes.map((c) => c.code)).toEqual(Array(10).fill(1001));
    expect(await lbp.exited).toBe(0);
    await settle(() => b.closes.length === 10);
    expect(b.closes).toEqual(Array(10).fill(1001));
  });
});

export type { WsBackend };
