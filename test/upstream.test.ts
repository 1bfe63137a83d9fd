import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamPool, UPSTREAM_DEFAULTS, type UpstreamHandler, type UpstreamRequest } from '../src/proxy/upstream.js';
import { HTTPParser, kOnBody, kOnHeadersComplete } from '../src/proxy/llhttp.js';
import type { LbError } from '../src/util/errors.js';
import { makeCert, pem } from './helpers/certs.js';
import { HttpServer } from '../src/proxy/server.js';
import { forward } from '../src/proxy/forward.js';

/** lb's upstream client against real servers on port 0: framing, reuse, limits, idle closes. */

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function server(handler: http.RequestListener, tune?: (s: http.Server) => void): Promise<{ url: URL; sockets: () => number; opened: () => number }> {
  const s = http.createServer(handler);
  tune?.(s);
  let opened = 0;
  s.on('connection', () => opened++);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => { s.closeAllConnections(); s.close(r); }));
  const count = (): number => (s as unknown as { _connections: number })._connections;
  return { url: new URL(`http://127.0.0.1:${(s.address() as AddressInfo).port}`), sockets: count, opened: () => opened };
}

/**
 * A backend that answers with exactly the bytes a test writes: `answer` gets each request's path,
 * the socket, and how many requests that connection has had (1 for its first).
 */
async function rawBackend(answer: (path: string, sock: net.Socket, nth: number) => void): Promise<{ url: URL; opened: () => number }> {
  let opened = 0;
  const raw = net.createServer((sock) => {
    opened++;
    let nth = 0;
    sock.on('data', (d) => answer(d.toString('latin1').split(' ')[1], sock, ++nth));
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => { raw.close(r); }));
  return { url: new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}`), opened: () => opened };
}

function pool(url: URL, extra: Partial<ConstructorParameters<typeof UpstreamPool>[1]> = {}): UpstreamPool {
  const p = new UpstreamPool(url, { ...UPSTREAM_DEFAULTS, connectTimeout: 1000, ...extra });
  cleanup.push(() => p.destroy());
  return p;
}

interface Result { status: number; headers: string[]; body: string; trailers: string[]; informational: number[] }

function send(p: UpstreamPool, req: Partial<UpstreamRequest> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const r: Result = { status: 0, headers: [], body: '', trailers: [], informational: [] };
    const handler: UpstreamHandler = {
      onInformational: (s) => r.informational.push(s),
      onHead: (s, h) => Object.assign(r, { status: s, headers: h }),
      onData: (c) => ((r.body += c.toString('latin1')), true),
      onEnd: (t) => resolve(Object.assign(r, { trailers: t })),
      onError: (e: LbError) => reject(e),
    };
    p.request({ method: 'GET', path: '/', headers: ['host', 'example.test'], body: null, chunked: false, headersTimeout: 2000, bodyTimeout: 2000, ...req }, handler);
  });
}

describe('upstream client', () => {
  it('reuses one keep-alive socket for sequential requests and caps concurrent sockets at `connections`', async () => {
    let inFlight = 0;
    let most = 0;
    const s = await server((req, res) => {
      inFlight++;
      most = Math.max(most, inFlight);
      setTimeout(() => { inFlight--; res.end(req.url); }, 20);
    });
    const p = pool(s.url, { connections: 3 });
    for (let i = 0; i < 5; i++) expect((await send(p, { path: `/seq${i}` })).body).toBe(`/seq${i}`);
    expect(s.opened()).toBe(1);
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => send(p, { path: `/c${i}` })));
    expect(all.map((r) => r.body)).toEqual(Array.from({ length: 20 }, (_, i) => `/c${i}`));
    expect(most).toBe(3);
    expect(s.opened()).toBe(3);
  });

  it('frames bodies: Content-Length passes as is, a chunked body is re-chunked; HEAD, 204 and 304 have no body', async () => {
    const s = await server((req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => {
        if (req.url === '/204') return res.writeHead(204).end();
        if (req.url === '/304') return res.writeHead(304, { 'content-length': '99' }).end();
        res.setHeader('content-length', String(`${req.headers['transfer-encoding'] ?? 'cl'}:${n}`.length));
        res.end(`${req.headers['transfer-encoding'] ?? 'cl'}:${n}`);
      });
    });
    const p = pool(s.url);
    const body = (n: number) => Readable.from([Buffer.alloc(n, 1), Buffer.alloc(n, 2)]);
    expect((await send(p, { method: 'POST', headers: ['host', 'x', 'content-length', '20'], body: body(10) })).body).toBe('cl:20');
    expect((await send(p, { method: 'POST', headers: ['host', 'x'], body: body(7), chunked: true })).body).toBe('chunked:14');
    const head = await send(p, { method: 'HEAD' });
    expect([head.status, head.body]).toEqual([200, '']);
    expect((await send(p, { path: '/204' })).status).toBe(204);
    expect((await send(p, { path: '/304' })).status).toBe(304);
    expect((await send(p)).body).toBe('cl:0'); // the socket is still in step after all of them
    expect(s.opened()).toBe(1);
  });

  it('a Content-Length body passes through whole however it is split, and bytes after it are never taken for the next answer', async () => {
    // A raw backend: the answer's head, its body in uneven pieces (some joined with the head),
    // then, on the second request, a body followed by stray bytes.
    const body = Buffer.alloc(70_000, 'z');
    const raw = net.createServer((sock) => {
      let n = 0;
      sock.on('data', async () => {
        n++;
        const head = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
        if (n === 1) {
          sock.write(Buffer.concat([head, body.subarray(0, 10)]));
          for (let at = 10; at < body.length; at += 7_001) {
            await new Promise((r) => setTimeout(r, 1));
            sock.write(body.subarray(at, at + 7_001));
          }
        } else sock.write(Buffer.concat([head, body, Buffer.from('HTTP/1.1 200 OK\r\n')]));
      });
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => raw.close(r)));
    const p = pool(new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}`));
    const first = await send(p);
    expect(first.body).toBe(body.toString('latin1'));
    const second = await send(p);
    expect(second.body.length).toBe(body.length);
    // The stray bytes cost the socket: it is closed, not handed to the next request.
    for (let i = 0; i < 100 && p.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(p.size).toBe(0);
  });

  it('bytes after a chunked answer begin no answer for the next request: that socket is closed', async () => {
    // The second answer is chunked and followed, in the same write, by the start of a head nobody
    // asked for; llhttp takes those bytes quietly, so only the message they begin gives them away.
    const b = await rawBackend((_path, sock, nth) => {
      const answer = `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nok-${nth}!\r\n0\r\n\r\n`;
      sock.write(nth === 2 ? `${answer}HTTP/1.1 200 OK\r\nX-Stale: yes\r\n` : answer);
    });
    const p = pool(b.url);
    expect((await send(p)).body).toBe('ok-1!');
    expect((await send(p)).body).toBe('ok-2!');
    const third = await send(p);
    expect(third.status).toBe(200);
    expect(third.headers).not.toContain('X-Stale');
    expect(third.body).toBe('ok-1!'); // a fresh connection's first answer
    expect(b.opened()).toBe(2);
  });

  it('a 101 lb never asked for is a protocol error, with or without Upgrade; other 1xx are relayed', async () => {
    const p = pool((await rawBackend((path, sock) => {
      if (path === '/bare101') sock.write('HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      if (path === '/ws101') sock.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
      if (path === '/102') sock.write('HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    })).url);
    await expect(send(p, { path: '/bare101' })).rejects.toMatchObject({ code: 'LB_BACKEND_PROTOCOL' });
    await expect(send(p, { path: '/ws101' })).rejects.toMatchObject({ code: 'LB_BACKEND_PROTOCOL' });
    const r = await send(p, { path: '/102' });
    expect(r.informational).toEqual([102]);
    expect(r.body).toBe('ok');
  });

  it('a transfer coding other than chunked is refused (lb re-frames bodies and would drop it), chunked in any case is fine', async () => {
    const p = pool((await rawBackend((path, sock) => {
      if (path === '/gzip') sock.end('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nGZIPBYTES');
      if (path === '/gzip-chunked') sock.write('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nGZ\r\n0\r\n\r\n');
      if (path === '/Chunked') sock.write('HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    })).url);
    await expect(send(p, { path: '/gzip' })).rejects.toMatchObject({ code: 'LB_BACKEND_PROTOCOL' });
    await expect(send(p, { path: '/gzip-chunked' })).rejects.toMatchObject({ code: 'LB_BACKEND_PROTOCOL' });
    expect((await send(p, { path: '/Chunked' })).body).toBe('ok');
  });

  it("a silence that is the client's is LB_CLIENT_TIMEOUT, never the backend's: a request body it stops sending, a response it stops reading", async () => {
    const s = await server((req, res) => {
      if (req.url === '/big') return void res.end(Buffer.alloc(8 << 20, 'b')); // more than the sockets buffer
      if (req.url === '/duplex') {
        res.flushHeaders();
        return void req.pipe(res);
      }
      req.resume();
      req.on('end', () => res.end('got it'));
    });
    const p = pool(s.url);
    // The body: 5 of its 10 bytes, then nothing more from the client.
    const body = new Readable({ read() {} });
    body.push('hello');
    await expect(send(p, { method: 'POST', headers: ['host', 'x', 'content-length', '10'], body, headersTimeout: 300, bodyTimeout: 300 })).rejects.toMatchObject({ code: 'LB_CLIENT_TIMEOUT' });
    // The response: the client takes one piece and never asks for more.
    const stalled = await new Promise<LbError>((resolve) => {
      p.request({ method: 'GET', path: '/big', headers: ['host', 'x'], body: null, chunked: false, headersTimeout: 300, bodyTimeout: 300 }, {
        onInformational() {},
        onHead() {},
        onData: () => false,
        onEnd: () => resolve(new Error('completed') as LbError),
        onError: resolve,
      });
    });
    expect(stalled.code).toBe('LB_CLIENT_TIMEOUT');
    // A backend that answers at once and then waits for the rest of the body (full duplex): the
    // client that stops sending it is still the one waited on.
    const duplex = new Readable({ read() {} });
    duplex.push('hello');
    let duplexHead = 0;
    const half = await new Promise<LbError>((resolve) => {
      p.request({ method: 'POST', path: '/duplex', headers: ['host', 'x', 'content-length', '10'], body: duplex, chunked: false, headersTimeout: 300, bodyTimeout: 300 }, {
        onInformational() {},
        onHead: (status) => void (duplexHead = status),
        onData: () => true,
        onEnd: () => resolve(new Error('completed') as LbError),
        onError: resolve,
      });
    });
    expect(duplexHead).toBe(200);
    expect(half.code).toBe('LB_CLIENT_TIMEOUT');
    // And a backend that is itself silent is still the backend's.
    const silent = await server(() => undefined);
    await expect(send(pool(silent.url), { headersTimeout: 300 })).rejects.toMatchObject({ code: 'LB_BACKEND_TIMEOUT' });
  });

  it('relays 1xx before the answer and trailers after it; adds Host for a request without one', async () => {
    const s = await server((req, res) => {
      res.writeEarlyHints({ link: '</a.css>; rel=preload' });
      res.writeHead(200, { trailer: 'x-sum' });
      res.write(`host=${req.headers.host}`);
      res.addTrailers({ 'x-sum': '42' });
      res.end();
    });
    const r = await send(pool(s.url), { headers: [] });
    expect(r.informational).toEqual([103]);
    expect(r.body).toBe(`host=${s.url.host}`);
    expect(r.trailers).toEqual(['x-sum', '42']);
  });

  it("closes idle sockets before the backend's Keep-Alive timeout, and opens a fresh one next time", async () => {
    const s = await server((_req, res) => res.end('ok'), (srv) => (srv.keepAliveTimeout = 3000)); // hints timeout=3
    const p = pool(s.url, { keepAliveThreshold: 2000 }); // so lb keeps it 1 s
    await send(p);
    expect(p.size).toBe(1);
    await new Promise((r) => setTimeout(r, 2200)); // lb's 1 s (+ sweep), still before the backend's 3 s
    expect(p.size).toBe(0);
    await send(p);
    expect(s.opened()).toBe(2);
  });

  it('classifies failures: refused → connect, reset before the head → reset, silence → timeout, garbage → protocol', async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    await expect(send(pool(new URL(`http://127.0.0.1:${deadPort}`)))).rejects.toMatchObject({ code: 'LB_BACKEND_CONNECT' });

    const raw = net.createServer((sock) => {
      sock.once('data', (d) => {
        const path = d.toString('latin1').split(' ')[1];
        if (path === '/reset') sock.resetAndDestroy();
        if (path === '/garbage') sock.end('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n');
        // /silent: never answer
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => raw.close(r)));
    const p = pool(new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}`));
    await expect(send(p, { path: '/reset' })).rejects.toMatchObject({ code: 'LB_BACKEND_RESET' });
    await expect(send(p, { path: '/silent', headersTimeout: 300 })).rejects.toMatchObject({ code: 'LB_BACKEND_TIMEOUT' });
    await expect(send(p, { path: '/garbage' })).rejects.toMatchObject({ code: 'LB_BACKEND_PROTOCOL' });
    expect(p.size).toBe(0); // none of those sockets is kept
  });

  it('a response that keeps coming, however slowly, is not a timeout; one that stops is', async () => {
    // Parts every 100 ms over ~1 s, with a 300 ms inactivity limit: never 300 ms without a byte.
    const s = await server((req, res) => {
      res.writeHead(200, { 'content-length': req.url === '/stall' ? 20 : 10 });
      let n = 0;
      const t = setInterval(() => {
        res.write('x');
        if (++n === 10) {
          clearInterval(t);
          if (req.url !== '/stall') res.end();
        }
      }, 100);
      res.on('close', () => clearInterval(t));
    });
    const p = pool(s.url);
    const r = await send(p, { path: '/slow', headersTimeout: 300, bodyTimeout: 300 });
    expect([r.status, r.body]).toEqual([200, 'x'.repeat(10)]);
    await expect(send(p, { path: '/stall', headersTimeout: 300, bodyTimeout: 300 })).rejects.toMatchObject({ code: 'LB_BACKEND_TIMEOUT' });
  });

  it('a limit of 0 means none: a 300 ms answer with timeouts of 0 is served', async () => {
    const s = await server((_req, res) => void setTimeout(() => res.end('ok'), 300));
    const r = await send(pool(s.url, { connectTimeout: 0 }), { headersTimeout: 0, bodyTimeout: 0 });
    expect([r.status, r.body]).toEqual([200, 'ok']);
  });

  describe('HTTPS backends (the socket stream path)', () => {
    const cert = makeCert();
    async function tlsServer(opts: https.ServerOptions, handler: http.RequestListener): Promise<URL> {
      const s = https.createServer({ cert: pem(cert.cert), key: pem(cert.key), ...opts }, handler);
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      cleanup.push(() => new Promise((r) => { s.closeAllConnections(); s.close(r); }));
      return new URL(`https://localhost:${(s.address() as AddressInfo).port}`);
    }

    it('the response limit counts from the connection, even when it equals the connect limit', async () => {
      // A 600 ms handshake, then a 600 ms wait for the answer: never 1 s of silence.
      const url = await tlsServer(
        { SNICallback: (_name, cb) => void setTimeout(() => cb(null, undefined as never), 600) },
        (_req, res) => void setTimeout(() => res.end('ok'), 600),
      );
      const r = await send(pool(url, { connectTimeout: 1000, tls: { rejectUnauthorized: false } }), { headersTimeout: 1000, bodyTimeout: 1000 });
      expect([r.status, r.body]).toEqual([200, 'ok']);
    });

    it('a large request body that the backend reads slowly is activity while it goes out', async () => {
      // The backend waits 600 ms before reading 32 MiB, answers 600 ms after the last byte.
      const size = 32 * 1024 * 1024;
      const url = await tlsServer({}, (req, res) => {
        req.pause();
        setTimeout(() => req.resume(), 600);
        req.on('end', () => void setTimeout(() => res.end('ok'), 600));
      });
      const r = await send(pool(url, { connectTimeout: 5000, tls: { rejectUnauthorized: false } }), {
        method: 'POST', headers: ['host', 'x', 'content-length', String(size)], body: Readable.from([Buffer.alloc(size, 1)]),
        headersTimeout: 1000, bodyTimeout: 1000,
      });
      expect([r.status, r.body]).toEqual([200, 'ok']);
    });
  });

  it('clients that stop reading a slowly trickled body pin about what is queued for them, not a read buffer per piece', async () => {
    // Backend reads of ~200 bytes; each piece's write to a stalled client is queued and keeps its
    // bytes. The next read must go after them in the same buffer, not to a fresh 64 KiB one.
    const total = 64 * 1024 * 1024;
    const data = Buffer.alloc(total, 0x61);
    const backend = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => {
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`);
        let at = 0;
        const pump = (): void => {
          if (at >= total || s.destroyed) return;
          const ok = s.write(data.subarray(at, (at += 200)));
          if (ok) setImmediate(pump);
          else s.once('drain', pump);
        };
        pump();
      });
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => backend.close(r)));
    const p = pool(new URL(`http://127.0.0.1:${(backend.address() as AddressInfo).port}`));
    const lb = new HttpServer({ headersTimeout: 60_000, keepAliveTimeout: 60_000 }, {
      onRequest: (req, res) => forward({ upstream: p, req, res, path: req.url, headers: ['host', 'x'], timeout: 60_000, onResponse: () => {} }, () => {}),
      onClientError: (_e, s) => s.destroy(),
    });
    await new Promise<void>((r) => lb.server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => { lb.closeAllConnections(); lb.server.close(r); }));
    const before = process.memoryUsage().arrayBuffers;
    const clients = Array.from({ length: 10 }, () => {
      const c = net.connect((lb.server.address() as AddressInfo).port, '127.0.0.1');
      c.on('error', () => {});
      c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      c.pause(); // never reads
      cleanup.push(() => c.destroy());
      return c;
    });
    await new Promise((r) => setTimeout(r, 3000)); // the socket buffers fill, lb's writes queue, the backends are paused
    const grew = process.memoryUsage().arrayBuffers - before;
    expect(clients.length).toBe(10);
    expect(grew).toBeLessThan(10 * 1024 * 1024); // ~5 MiB per client when each piece pinned a buffer of its own
  });

  it("node's parser hands a body piece over as a copy (the connection's read buffer is reused after execute returns)", () => {
    for (const type of [HTTPParser.REQUEST, HTTPParser.RESPONSE]) {
      const p = new HTTPParser();
      p.initialize(type, {}, 0, 0);
      const pieces: Buffer[] = [];
      p[kOnBody] = (b: Buffer) => void pieces.push(b);
      const head = type === HTTPParser.REQUEST ? 'POST / HTTP/1.1\r\nHost: x\r\n' : 'HTTP/1.1 200 OK\r\n';
      const buf = Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
      p.execute(buf);
      buf.fill(0x41);
      expect(Buffer.concat(pieces).toString()).toBe('hello');
    }
  });

  it("a backend's header field with any byte node:http would refuse to send is a protocol error (so lb need not check again)", async () => {
    // Every byte in a name and in a value, through the parser the upstream client uses.
    const accepted: string[] = [];
    for (let c = 0; c < 256; c++) {
      for (const [name, value] of [[`x${String.fromCharCode(c)}y`, 'v'], ['x-test', `a${String.fromCharCode(c)}b`]]) {
        const p = new HTTPParser();
        p.initialize(HTTPParser.RESPONSE, {}, 0, 0);
        let fields: string[] | null = null;
        p[kOnHeadersComplete] = (_a: number, _b: number, h: string[]) => {
          fields = h;
          return 1;
        };
        const r = p.execute(Buffer.from(`HTTP/1.1 200 OK\r\n${name}: ${value}\r\ncontent-length: 0\r\n\r\n`, 'latin1'));
        if (r instanceof Error || fields === null) continue;
        const f: string[] = fields;
        try {
          for (let i = 0; i < f.length; i += 2) {
            http.validateHeaderName(f[i]);
            http.validateHeaderValue(f[i], f[i + 1]);
          }
        } catch {
          accepted.push(JSON.stringify([name, value]));
        }
      }
    }
    expect(accepted).toEqual([]);
    // And end to end: such a response never reaches the handler's onHead.
    const raw = net.createServer((sock) => {
      sock.once('data', (d) => {
        const path = d.toString('latin1').split(' ')[1];
        const field = path === '/name' ? 'x(y: 1' : path === '/del' ? 'x-a: 1\x7f' : 'x-a: 1\x01';
        sock.end(`HTTP/1.1 200 OK\r\n${field}\r\ncontent-length: 0\r\n\r\n`, 'latin1');
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => raw.close(r)));
    const p = pool(new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}`));
    for (const path of ['/name', '/del', '/ctl']) await expect(send(p, { path })).rejects.toMatchObject({ code: 'LB_BACKEND_PROTOCOL' });
  });

  it('an exchange aborted while queued never reaches the backend; close() waits for in-flight work', async () => {
    const seen: string[] = [];
    const s = await server((req, res) => {
      seen.push(req.url!);
      setTimeout(() => res.end('done'), 100);
    });
    const p = pool(s.url, { connections: 1 });
    const first = send(p, { path: '/first' });
    const handler: UpstreamHandler = { onInformational() {}, onHead() {}, onData: () => true, onEnd() {}, onError() {} };
    const queued = p.request({ method: 'GET', path: '/queued', headers: ['host', 'x'], body: null, chunked: false, headersTimeout: 1000, bodyTimeout: 1000 }, handler);
    queued.abort(new Error('client closed'));
    const closed = p.close();
    expect((await first).body).toBe('done');
    await closed;
    expect(seen).toEqual(['/first']);
    expect(p.size).toBe(0);
  });
});
