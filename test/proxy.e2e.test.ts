import net from 'node:net';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { describe, expect, it, onTestFinished } from 'vitest';
import { request } from 'undici';
import { Readable } from 'node:stream';
import { deadPort, startBackend, type TestBackend } from './helpers/backends.js';
import { startLb } from './helpers/lb.js';
import { makeCert, pem } from './helpers/certs.js';
import { get, testAgent } from './helpers/client.js';

function yaml(backends: Array<{ id: string; url: string }>, extra = '', poolExtra = ''): string {
  return `
listeners:
  - { name: web, port: 0, host: 127.0.0.1, pool: app }
pools:
  app:
    affinity: { mode: none }
    balance: round-robin
${poolExtra}
    backends:
${backends.length ? backends.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n') : '      []'}
admin: { enabled: false }
state: { file: "\${DIR}/state.json" }
${extra}
`;
}

/** Send raw bytes, return everything the server answers until it closes or goes quiet. */
function raw(port: number, text: string, quietMs = 300): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let out = '';
    let timer = setTimeout(() => s.destroy(), quietMs * 10);
    s.on('data', (d) => {
      out += d.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => s.destroy(), quietMs);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', () => undefined);
  });
}

/** The payload of a chunked body (chunk extensions and trailers are not expected here). */
function dechunk(buf: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', at);
    const size = parseInt(buf.subarray(at, eol).toString(), 16);
    if (!(size > 0)) return Buffer.concat(out);
    out.push(buf.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

describe('forwarding', () => {
  it('removes hop-by-hop headers, including those named in Connection, but never what lb adds', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(yaml([b]));
    await raw(
      lb.port(),
      'GET /x HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Secret, X-Forwarded-For, X-Request-Id, Cookie\r\n' +
        'X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nCookie: app=1\r\n\r\n',
    );
    const h = b.seen[0].headers;
    for (const name of ['x-secret', 'keep-alive', 'te', 'proxy-connection', 'upgrade']) expect(h[name], name).toBeUndefined();
    expect(h.connection ?? '').not.toMatch(/x-secret/i);
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(h.cookie).toBe('app=1');
    expect(h.host).toBe('example.test');
    expect(h['x-forwarded-host']).toBe('example.test');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-port']).toBe(String(lb.port()));
  });

  it('replaces X-Forwarded-* from untrusted clients and appends for trusted proxies', async () => {
    const b = await startBackend('n1');
    const untrusted = await startLb(yaml([b]));
    await get(`${untrusted.url}/`, { headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil' } });
    expect(b.seen[0].headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(b.seen[0].headers['x-forwarded-proto']).toBe('http');
    expect(b.seen[0].headers['x-forwarded-host']).toBe(`127.0.0.1:${untrusted.port()}`);

    const trusted = await startLb(yaml([b], 'trustedProxies: ["127.0.0.0/8"]\nforwarded: true'));
    await get(`${trusted.url}/`, { headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' } });
    const h = b.seen[1].headers;
    expect(h['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h.forwarded).toBe(`for=127.0.0.1;proto=http;host="127.0.0.1:${trusted.port()}"`);
  });

  it('keeps a sane X-Request-Id and generates one otherwise', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(yaml([b]));
    await get(`${lb.url}/`, { headers: { 'x-request-id': 'abc-123' } });
    await get(`${lb.url}/`);
    await get(`${lb.url}/`, { headers: { 'x-request-id': 'bad id' } });
    expect(b.seen[0].headers['x-request-id']).toBe('abc-123');
    // Generated: a UUID (version 8, RFC 9562 variant), a different one per request.
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(b.seen[1].headers['x-request-id']).toMatch(uuid);
    expect(b.seen[2].headers['x-request-id']).toMatch(uuid);
    expect(b.seen[2].headers['x-request-id']).not.toBe(b.seen[1].headers['x-request-id']);
  });

  it('streams 1 GiB up and 1 GiB down with flat memory', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(yaml([b]));
    const GiB = 1024 ** 3;
    const before = process.memoryUsage().rss;
    let peak = before;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    try {
      const chunk = Buffer.alloc(1024 * 1024, 98);
      let sent = 0;
      const body = new Readable({
        read() {
          if (sent >= GiB) return void this.push(null);
          sent += chunk.length;
          this.push(chunk);
        },
      });
      const up = await request(`${lb.url}/upload`, { method: 'POST', body, headers: { 'content-length': String(GiB) } });
      expect(await up.body.json()).toEqual({ id: 'n1', bytes: GiB });
      const down = await request(`${lb.url}/bytes?n=${GiB}`);
      let got = 0;
      for await (const c of down.body) got += (c as Buffer).length;
      expect(got).toBe(GiB);
    } finally {
      clearInterval(sample);
    }
    // Client, lb and backend share this process: buffering either body would add ≥ 1 GiB.
    expect(peak - before).toBeLessThan(256 * 1024 * 1024);
  });

  it('relays every byte of a large varied body to a slow reader, with Content-Length and chunked', async () => {
    // lb reads backend bytes into a reused buffer; a chunk whose write to the client had to wait
    // must not be overwritten by the next read. Random bytes, so a stale or reused byte shows;
    // more than loopback's socket buffers hold, and a client that stops reading for a while, so
    // lb's writes to it do wait.
    const body = randomBytes(48 * 1024 * 1024);
    const b = await startBackend('n1', {
      handler: async (req, res) => {
        res.writeHead(200, req.url === '/chunked' ? {} : { 'content-length': String(body.length) });
        let at = 0;
        for (let i = 0; at < body.length; i++) {
          const n = Math.min(body.length - at, 1 + ((i * 7919) % 90_000)); // 1 B to 88 KiB pieces
          const ok = res.write(body.subarray(at, at + n));
          at += n;
          if (!ok) await new Promise((r) => res.once('drain', r));
        }
        res.end();
      },
    });
    const lb = await startLb(yaml([b]));
    for (const path of ['/length', '/chunked']) {
      const sock = net.connect(lb.port(), '127.0.0.1');
      sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      sock.pause();
      await new Promise((r) => setTimeout(r, 400)); // lb fills the socket buffers, then its writes queue
      const parts: Buffer[] = [];
      let reads = 0;
      for await (const c of sock) {
        parts.push(c as Buffer);
        if (++reads % 64 === 0) await new Promise((r) => setTimeout(r, 1)); // and keep reading slowly
      }
      const all = Buffer.concat(parts);
      const headEnd = all.indexOf('\r\n\r\n') + 4;
      expect(all.subarray(0, 15).toString(), path).toBe('HTTP/1.1 200 OK');
      const got = path === '/chunked' ? dechunk(all.subarray(headEnd)) : all.subarray(headEnd);
      expect(got.length, path).toBe(body.length);
      expect(got.equals(body), path).toBe(true);
    }
  });

  it('passes trailers and 103 Early Hints through', async () => {
    const b = await startBackend('n1', {
      handler: (_req, res) => {
        res.writeEarlyHints({ link: '</style.css>; rel=preload' });
        res.writeHead(200, { trailer: 'x-checksum', 'content-type': 'text/plain' });
        res.write('hello');
        res.addTrailers({ 'x-checksum': 'abc' });
        res.end();
      },
    });
    const lb = await startLb(yaml([b]));
    const out = await raw(lb.port(), 'GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 103 Early Hints\r\n[Ll]ink: <\/style\.css>; rel=preload/);
    expect(out).toContain('HTTP/1.1 200 OK');
    expect(out).toMatch(/x-checksum: abc\r\n/i);
  });
});

describe('failures get the right status with a short body, never a hang', () => {
  it('503 when the pool has no backend', async () => {
    const lb = await startLb(yaml([]));
    const r = await get(`${lb.url}/`);
    expect(r.status).toBe(503);
    expect(r.body).toBe('503 Service Unavailable: no backend available\n');
  });

  it('retries a refused GET on another backend, but answers a refused POST with 502 (unless retries.nonIdempotent)', async () => {
    const dead = { id: 'dead', url: `http://127.0.0.1:${await deadPort()}` };
    const live = await startBackend('live');
    const lb = await startLb(yaml([dead, live]));
    for (let i = 0; i < 4; i++) {
      const r = await get(`${lb.url}/`);
      expect(r.status).toBe(200);
      expect(r.json().id).toBe('live');
    }
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await get(`${lb.url}/upload`, { method: 'POST', body: 'x' })).status);
    // Round-robin alternates: the POSTs placed on the dead backend get 502, the others succeed.
    expect(statuses.sort()).toEqual([200, 200, 502, 502]);
    expect(lb.logs().filter((l) => l.access && (l.retries as number) > 0)).toHaveLength(2);
    // Opt-in: a refused POST had nothing sent, so it may go elsewhere.
    const lb2 = await startLb(yaml([dead, live], 'retries: { nonIdempotent: true }'));
    for (let i = 0; i < 4; i++) expect((await get(`${lb2.url}/upload`, { method: 'POST', body: 'x' })).json()).toEqual({ id: 'live', bytes: 1 });
    expect(lb2.logs().filter((l) => l.access && (l.retries as number) > 0)).toHaveLength(2);
  });

  it('retries a GET reset before any response byte, but answers a POST that was sent and reset with 502', async () => {
    const handler = (req: import('node:http').IncomingMessage): void => {
      req.resume();
      req.on('end', () => req.socket.destroy()); // read the whole request, then reset
    };
    const resetter = await startBackend('resetter', { handler });
    const live = await startBackend('live');
    const lb = await startLb(yaml([resetter, live], '', '    passiveHealth: { enabled: false }'));
    const gets = await Promise.all(Array.from({ length: 4 }, () => get(`${lb.url}/`)));
    expect(gets.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const posts: number[] = [];
    for (let i = 0; i < 4; i++) posts.push((await get(`${lb.url}/upload`, { method: 'POST', body: 'x' })).status);
    expect(posts.sort()).toEqual([200, 200, 502, 502]);
    expect(resetter.seen.filter((x) => x.method === 'POST')).toHaveLength(2); // each sent once, never replayed
  });

  it('https:// backends: verified against tlsCa (502 when the certificate is not trusted), or not at all with tlsInsecure', async () => {
    const c = makeCert();
    const server = https.createServer({ cert: pem(c.cert), key: pem(c.key) }, (req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => res.end(JSON.stringify({ secure: (req.socket as import('node:tls').TLSSocket).encrypted === true, method: req.method, bytes: n })));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
    const backend = { id: 'tls', url: `https://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}` };
    const verified = await startLb(yaml([backend], '', `    tlsCa: "${c.cert}"`));
    expect((await get(`${verified.url}/`)).json()).toEqual({ secure: true, method: 'GET', bytes: 0 });
    const post = await get(`${verified.url}/up`, { method: 'POST', body: 'x'.repeat(100_000) });
    expect(post.json()).toEqual({ secure: true, method: 'POST', bytes: 100_000 });
    const untrusted = await startLb(yaml([backend]));
    const refused = await get(`${untrusted.url}/`);
    expect(refused.status).toBe(502);
    expect(untrusted.logs().some((l) => l.access && l.error === 'LB_BACKEND_CONNECT')).toBe(true);
    const insecure = await startLb(yaml([backend], '', '    tlsInsecure: true'));
    expect((await get(`${insecure.url}/`)).json().secure).toBe(true);
  });

  it('clients that hang up mid-request are logged 499 and never held against the backend by passive health', async () => {
    const b = await startBackend('only');
    const lb = await startLb(yaml([b], '', '    passiveHealth: { enabled: true, consecutiveErrors: 2, cooldown: 1m }'));
    // Six clients ask for a slow answer and hang up before it comes (wrk does this at the end of
    // every run). They hang up only once the backend has the requests, however slow the machine.
    const sockets = Array.from({ length: 6 }, () => {
      const s = net.connect(lb.port(), '127.0.0.1', () => s.write('GET /slow?ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n'));
      return s;
    });
    const until = async (ok: () => boolean) => {
      for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 25));
    };
    await until(() => b.seen.length >= 6);
    for (const s of sockets) s.destroy();
    const hungUp = () => lb.logs().filter((l) => l.access && l.status === 499 && l.error === 'LB_CLIENT_CLOSED');
    await until(() => hungUp().length >= 6);
    expect((await get(`${lb.url}/`)).status).toBe(200);
    expect(hungUp()).toHaveLength(6);
    expect(lb.logs().filter((l) => l.event === 'backend.health')).toEqual([]);
  });

  it("a client that stops sending its body gets 408, and its silence is never held against the backend", async () => {
    const b = await startBackend('only');
    const lb = await startLb(yaml([b], 'timeouts: { backendResponse: 300ms }', '    passiveHealth: { enabled: true, consecutiveErrors: 2, cooldown: 1m }'));
    // Three clients send a head and half a body, then nothing: each is the client's timeout.
    const replies = await Promise.all(
      [1, 2, 3].map(() => raw(lb.port(), 'POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello', 1000)),
    );
    for (const r of replies) expect(r).toMatch(/^HTTP\/1\.1 408 /);
    const timedOut = lb.logs().filter((l) => l.access && l.status === 408 && l.error === 'LB_CLIENT_TIMEOUT');
    expect(timedOut).toHaveLength(3);
    // Two in a row would have ejected the backend had they counted as its errors.
    expect(lb.logs().filter((l) => l.event === 'backend.health')).toEqual([]);
    expect((await get(`${lb.url}/`)).status).toBe(200);
  });

  it('answers CONNECT 400 without forwarding it (a backend closing on it must not count against its health)', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(yaml([b], '', '    passiveHealth: { enabled: true, consecutiveErrors: 2, cooldown: 1m }'));
    for (let i = 0; i < 3; i++) expect(await raw(lb.port(), 'CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(b.seen).toHaveLength(0);
    expect(lb.logs().filter((l) => l.event === 'backend.health')).toEqual([]);
    expect((await get(`${lb.url}/`)).status).toBe(200);
  });

  it('answers a request body with a transfer coding besides chunked 501, without forwarding it', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(yaml([b]));
    const reply = await raw(lb.port(), 'POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nGZ\r\n0\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 501 /);
    expect(b.seen).toHaveLength(0);
    expect((await get(`${lb.url}/`)).status).toBe(200);
  });

  it('sends the head as soon as the backend does, before any body (server-sent events, long polls)', async () => {
    let send: (() => void) | undefined;
    const b = await startBackend('sse', {
      handler: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        send = () => res.end('data: first\n\n');
      },
    });
    const lb = await startLb(yaml([b]));
    const sock = net.connect(lb.port(), '127.0.0.1', () => sock.write('GET /events HTTP/1.1\r\nHost: x\r\n\r\n'));
    onTestFinished(() => void sock.destroy());
    let got = '';
    sock.on('data', (d) => (got += d.toString('latin1')));
    for (let i = 0; i < 200 && !got.includes('\r\n\r\n'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*content-type: text\/event-stream[^]*\r\n\r\n$/i);
    expect(send).toBeDefined();
    send!();
    for (let i = 0; i < 200 && !got.includes('data: first'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(got).toContain('data: first');
  });

  it('answers an Upgrade other than WebSocket (h2c from curl --http2) as the plain request it is, and relays 102', async () => {
    const b = await startBackend('n1', {
      handler: (req, res) => {
        if (req.url === '/slow') res.writeProcessing();
        res.end(`plain ${req.url} upgrade=${req.headers.upgrade ?? 'none'}`);
      },
    });
    const lb = await startLb(yaml([b]));
    const reply = await raw(
      lb.port(),
      'GET /one HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n' +
        'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(reply).toContain('plain /one upgrade=none');
    expect(reply).toMatch(/HTTP\/1\.1 102 Processing\r\n\r\nHTTP\/1\.1 200 OK\r\n[^]*plain \/slow upgrade=none/);
    expect(b.seen[0].headers['http2-settings']).toBeUndefined();
  });

  it('504 when the backend does not answer within backendResponse', async () => {
    const b = await startBackend('slow');
    const lb = await startLb(yaml([b], 'timeouts: { backendResponse: 300ms }'));
    const r = await get(`${lb.url}/slow?ms=3000`);
    expect(r.status).toBe(504);
    expect(r.body).toMatch(/^504 Gateway Timeout/);
  });

  it('a backend that dies mid-response aborts the client connection (no truncated body presented as complete)', async () => {
    const b = await startBackend('n1', {
      handler: (_req, res) => {
        res.writeHead(200, { 'content-length': 1000 });
        res.write('x'.repeat(100));
        setTimeout(() => res.socket?.destroy(), 50);
      },
    });
    const lb = await startLb(yaml([b]));
    const r = await request(`${lb.url}/`);
    expect(r.statusCode).toBe(200);
    await expect(r.body.text()).rejects.toThrow();
  });
});

describe('routes', () => {
  it('sends reads under /reports/ to replicas and everything else to the primary (first match wins)', async () => {
    const primary = await startBackend('primary');
    const replica = await startBackend('replica');
    const lb = await startLb(`
listeners:
  - { name: web, port: 0, host: 127.0.0.1, pool: app }
routes:
  - match: { methods: [POST], pathPrefix: /reports/admin/ }
    pool: app
  - match: { methods: [GET, HEAD, OPTIONS], pathPrefix: /reports/ }
    pool: replicas
  - match: { header: { name: X-Replica, value: "yes" } }
    pool: replicas
pools:
  app:
    affinity: { mode: none }
    backends: [ { id: primary, url: "${primary.url}" } ]
  replicas:
    affinity: { mode: none }
    backends: [ { id: replica, url: "${replica.url}" } ]
admin: { enabled: false }
state: { file: "\${DIR}/state.json" }
`);
    const where = async (method: string, path: string, headers: Record<string, string> = {}) =>
      (await get(`${lb.url}${path}`, { method, headers })).headers['x-backend'];
    expect(await where('GET', '/reports/q1')).toBe('replica');
    expect(await where('HEAD', '/reports/q1')).toBe('replica');
    expect(await where('POST', '/reports/q1')).toBe('primary');
    expect(await where('POST', '/reports/admin/x')).toBe('primary');
    expect(await where('GET', '/app')).toBe('primary');
    expect(await where('GET', '/app', { 'x-replica': 'yes' })).toBe('replica');
  });
});

describe('access log', () => {
  it('writes one line per request with the fields operators need, and no cookie values', async () => {
    const b = await startBackend('n1');
    const lb = await startLb(yaml([b]));
    await get(`${lb.url}/hello?x=1`, { headers: { cookie: 'secret=abc', authorization: 'Bearer t0ps3cret' } });
    await new Promise((r) => setTimeout(r, 50));
    const lines = lb.logs().filter((l) => l.access);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ method: 'GET', path: '/hello?x=1', status: 200, pool: 'app', backend: 'n1', affinity: 'new' });
    expect(typeof lines[0].ms).toBe('number');
    expect(lines[0].bytes).toBeGreaterThan(0);
    expect(lines[0].reqId).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(lb.logs())).not.toMatch(/t0ps3cret|secret=abc/);
  });
});

export type { TestBackend };
