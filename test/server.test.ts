import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpServer, type ProxyRequest, type ProxyResponse, type ServerHandlers } from '../src/proxy/server.js';
import { exchange, statuses } from './helpers/raw.js';

/**
 * lb's HTTP/1.1 server side (src/proxy/server.ts) on a real port, spoken to in raw bytes: the
 * parts of node:http's behaviour it replaces that the proxy tests do not reach on their own.
 */

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

type Handler = (req: ProxyRequest, res: ProxyResponse) => void;

async function serve(onRequest: Handler, extra: Partial<ServerHandlers> = {}, opts = { headersTimeout: 2000, keepAliveTimeout: 5000 }): Promise<{ port: number; server: HttpServer }> {
  const server = new HttpServer(opts, {
    onRequest,
    onClientError: (_err, socket) => socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'),
    ...extra,
  });
  await new Promise<void>((r) => server.server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.server.close(() => r());
  }));
  return { port: (server.server.address() as AddressInfo).port, server };
}

const ok = (body = 'ok'): Handler => (_req, res) => {
  res.writeHead(200, ['content-length', String(body.length)]);
  res.end(Buffer.from(body));
};

describe('lb HTTP server', () => {
  it('answers pipelined requests in order even when later ones are ready first', async () => {
    const delays: Record<string, number> = { '/a': 150, '/b': 50, '/c': 0 };
    const { port } = await serve((req, res) => {
      setTimeout(() => {
        res.writeHead(200, ['content-length', '2']);
        res.end(Buffer.from(req.url.slice(1).repeat(2)));
      }, delays[req.url]);
    });
    const r = await exchange(port, 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statuses(r.text)).toEqual([200, 200, 200]);
    expect([...r.text.matchAll(/\r\n\r\n(\w\w)/g)].map((m) => m[1])).toEqual(['aa', 'bb', 'cc']);
    expect(r.closed).toBe(true);
  });

  it('Expect: 100-continue gets 100 Continue before the answer; another expectation gets 417', async () => {
    const { port } = await serve((req, res) => {
      let body = '';
      req.body!.on('data', (c: Buffer) => (body += c));
      req.body!.on('end', () => {
        res.writeHead(200, ['content-length', String(body.length)]);
        res.end(Buffer.from(body));
      });
    });
    const r = await exchange(port, 'POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
    expect(statuses(r.text)).toEqual([100, 200]);
    expect(r.text.endsWith('hello')).toBe(true);
    const refused = await exchange(port, 'POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 5\r\n\r\nhello', 500);
    expect(statuses(refused.text)).toEqual([417]);
  });

  it('frames a body of unknown length: chunked with trailers for HTTP/1.1, closed after it for HTTP/1.0', async () => {
    const { port } = await serve((_req, res) => {
      res.writeHead(200, ['content-type', 'text/plain']);
      res.write(Buffer.from('hello '));
      res.addTrailers({ 'x-checksum': 'abc' });
      res.end(Buffer.from('world'));
    });
    const v11 = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(v11.text).toMatch(/transfer-encoding: chunked\r\n/);
    expect(v11.text.split('\r\n\r\n').slice(1).join('\r\n\r\n')).toBe('6\r\nhello \r\n5\r\nworld\r\n0\r\nx-checksum: abc\r\n\r\n');
    const v10 = await exchange(port, 'GET / HTTP/1.0\r\n\r\n');
    expect(v10.text).not.toMatch(/transfer-encoding/i);
    expect(v10.text).toMatch(/connection: close\r\n/);
    expect(v10.text.endsWith('\r\n\r\nhello world')).toBe(true);
    expect(v10.closed).toBe(true);
  });

  it('adds Date and keep-alive, keeps HTTP/1.0 keep-alive only when asked, and sends no body for HEAD', async () => {
    const { port } = await serve(ok('four'));
    const head = await exchange(port, 'HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', 500);
    const [first, second] = head.text.split(/(?=HTTP\/1\.1 )/);
    expect(first).toMatch(/^HTTP\/1\.1 200 OK\r\ncontent-length: 4\r\nkeep-alive: timeout=5\r\ndate: \w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT\r\n\r\n$/);
    expect(second).toMatch(/connection: keep-alive\r\n/);
    expect(second.endsWith('\r\n\r\nfour')).toBe(true);
    expect(head.closed).toBe(false);
  });

  it('refuses a header it must not send, writing nothing', async () => {
    let thrown: unknown;
    const { port } = await serve((_req, res) => {
      try {
        res.writeHead(200, ['x-bad', 'a\r\nset-cookie: evil=1']);
      } catch (err) {
        thrown = err;
      }
      res.writeHead(502, ['content-length', '0']);
      res.end();
    });
    const r = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(thrown).toBeInstanceOf(TypeError);
    expect(statuses(r.text)).toEqual([502]);
    expect(r.text).not.toMatch(/evil/);
  });

  it('closes keep-alive connections idle past keepAliveTimeout; a head that never completes gets 408 at headersTimeout', async () => {
    const { port } = await serve(ok(), {
      onClientError: (err, socket) => socket.end(`HTTP/1.1 ${err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400} X\r\ncontent-length: 0\r\n\r\n`),
    }, { headersTimeout: 600, keepAliveTimeout: 300 });
    const idle = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 3000);
    expect(statuses(idle.text)).toEqual([200]);
    expect(idle.closed).toBe(true);
    const slow = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n', 3000);
    expect(statuses(slow.text)).toEqual([408]);
    expect(slow.closed).toBe(true);
  });

  const timing408: Partial<ServerHandlers> = {
    onClientError: (err, socket) => socket.end(`HTTP/1.1 ${err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400} X\r\ncontent-length: 0\r\n\r\n`),
  };

  it('a head that begins in the same read as the request before it is timed by headersTimeout, not left idle', async () => {
    const { port } = await serve(ok(), timing408, { headersTimeout: 400, keepAliveTimeout: 5000 });
    const r = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n', 3000);
    expect(statuses(r.text)).toEqual([200, 408]);
    expect(r.closed).toBe(true);
  });

  it('empty lines between requests begin no head: no 408 for them, and the request after them is served', async () => {
    const { port } = await serve(ok(), timing408, { headersTimeout: 300, keepAliveTimeout: 3000 });
    const c = net.connect(port, '127.0.0.1');
    let text = '';
    c.on('data', (d: Buffer) => (text += d.toString('latin1')));
    c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    for (let i = 0; i < 100 && !text.includes('\r\n\r\nok'); i++) await new Promise((r) => setTimeout(r, 10));
    c.write('\r\n');
    await new Promise((r) => setTimeout(r, 900)); // three headersTimeouts, the check runs every 250 ms
    expect(statuses(text)).toEqual([200]);
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    c.write('\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await closed;
    expect(statuses(text)).toEqual([200, 200]);
  });

  it('bytes a client sends after lb ended the connection begin nothing: it is still closed at keepAliveTimeout', async () => {
    const { port, server } = await serve(ok(), timing408, { headersTimeout: 300, keepAliveTimeout: 500 });
    const sessions = [
      'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', // lb closes after its answer
      'GET / HTTP/1.0\r\n\r\n',
      null, // a silent connection: 408 at headersTimeout
    ];
    await Promise.all(sessions.map(async (first) => {
      // A client that keeps its side open and sends more after lb's FIN.
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      c.on('error', () => undefined);
      let ended = false;
      c.on('end', () => (ended = true));
      c.resume();
      await new Promise((r) => c.once('connect', r));
      if (first) c.write(first);
      for (let i = 0; i < 300 && !ended; i++) await new Promise((r) => setTimeout(r, 10));
      expect(ended).toBe(true);
      c.write('GET /more HTTP/1.1\r\n');
      cleanup.push(() => c.destroy());
    }));
    for (let i = 0; i < 300 && server.connections > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(server.connections).toBe(0);
  });

  it('a client that closes abandons its request: the response sees close, destroyed', async () => {
    let res!: ProxyResponse;
    let closed = false;
    const { port } = await serve((_req, r) => {
      res = r;
      r.once('close', () => (closed = true));
    });
    const c = net.connect(port, '127.0.0.1', () => c.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await new Promise<void>((r) => c.on('close', () => r()));
    for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
    expect(closed).toBe(true);
    expect(res.destroyed).toBe(true);
  });

  it('a client that closes mid-upload: the body is aborted with an error saying so', async () => {
    const seen: string[] = [];
    await new Promise<void>((done) => {
      void serve((req) => {
        req.body!.on('aborted', () => seen.push('aborted'));
        req.body!.on('error', (e: Error) => {
          seen.push(e.message);
          done();
        });
        req.body!.resume();
      }).then(({ port }) => {
        const c = net.connect(port, '127.0.0.1', () => c.end('POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789'));
        c.on('error', () => undefined);
      });
    });
    expect(seen).toEqual(['aborted', 'client closed the connection']);
  });

  it('hands an upgrade over with the bytes after its head; one behind another request is refused', async () => {
    let got = '';
    const { port } = await serve((req, res) => void (req.url !== '/slow' && ok()(req, res)), {
      onUpgrade: (req, socket, head) => {
        got = `${req.method} ${req.url} ${req.headers.upgrade} ${head.toString()}`;
        socket.end('HTTP/1.1 101 Switching Protocols\r\n\r\n');
      },
    });
    const up = await exchange(port, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nfirst-frame');
    expect(statuses(up.text)).toEqual([101]);
    expect(got).toBe('GET /ws websocket first-frame');
    got = '';
    const behind = await exchange(port, 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    expect(got).toBe('');
    expect(behind.closed).toBe(true);
  });

  it('connections reading into one shared buffer: a head split across reads, interleaved with another connection, arrives whole', async () => {
    const seen: string[] = [];
    const { port } = await serve((req, res) => {
      const v = String(req.headers['x-long']);
      seen.push(`${req.url} ${v.length} ${[...new Set(v)].join('')} ${req.headers['x-tail']}`);
      ok()(req, res);
    });
    const a = net.connect(port, '127.0.0.1');
    const b = net.connect(port, '127.0.0.1');
    cleanup.push(() => { a.destroy(); b.destroy(); });
    const long = 'L'.repeat(3000);
    a.write(`GET /a HTTP/1.1\r\nHost: x\r\nX-Long: ${long.slice(0, 1000)}`); // the parser holds a partial value
    await new Promise((r) => setTimeout(r, 30));
    b.write(`GET /b HTTP/1.1\r\nHost: x\r\nX-Long: ${'M'.repeat(2000)}\r\nX-Tail: b\r\n\r\n`); // read into the same buffer meanwhile
    await new Promise((r) => b.once('data', r));
    a.write(`${long.slice(1000)}\r\nX-Tail: a\r\n\r\n`);
    await new Promise((r) => a.once('data', r));
    expect(seen).toEqual(['/b 2000 M b', '/a 3000 L a']);
  });

  it("an upgrade's head bytes are its own: later reads on the socket do not change them", async () => {
    // The connection reads into a reused buffer; the head handed over must be a copy.
    const heads: Buffer[] = [];
    const later: Buffer[] = [];
    const { port } = await serve(ok(), {
      onUpgrade: (_req, socket, head) => {
        heads.push(head);
        cleanup.push(() => socket.destroy());
        socket.on('data', (c: Buffer) => later.push(c));
        socket.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
      },
    });
    const c = net.connect(port, '127.0.0.1');
    c.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nAAAAAAAAAAAAAAAAAAAAAAAA');
    await new Promise((r) => c.once('data', r));
    c.write('B'.repeat(97));
    while (Buffer.concat(later).length < 97) await new Promise((r) => setTimeout(r, 5));
    c.destroy();
    expect(heads.map(String)).toEqual(['A'.repeat(24)]);
    expect(Buffer.concat(later).toString()).toBe('B'.repeat(97));
  });

  it('bytes and a FIN a client sends before the upgrade handler reads wait for it, as node:http keeps them', async () => {
    // ws/upgrade.ts starts reading only once the backend has answered: nothing may be lost before that.
    let seen = '';
    let ended = false;
    const { port } = await serve(ok(), {
      onUpgrade: (_req, socket) => {
        cleanup.push(() => socket.destroy());
        setTimeout(() => {
          socket.on('data', (d: Buffer) => (seen += d));
          socket.on('end', () => (ended = true));
          socket.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
        }, 150);
      },
    });
    const c = net.connect(port, '127.0.0.1');
    cleanup.push(() => c.destroy());
    c.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    await new Promise((r) => setTimeout(r, 30));
    c.end('early-bytes');
    for (let i = 0; i < 200 && !ended; i++) await new Promise((r) => setTimeout(r, 10));
    expect([seen, ended]).toEqual(['early-bytes', true]);
  });

  it("a chunked request's trailers never become part of the next request on the connection", async () => {
    const seen: Array<[string, string[]]> = [];
    const { port } = await serve((req, res) => {
      seen.push([req.url, req.rawHeaders]);
      req.body?.resume();
      const answer = (): void => ok()(req, res);
      if (req.body) req.body.on('end', answer);
      else answer();
    });
    const r = await exchange(port, 'POST /one HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Trailer-Secret: s3cr3t\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statuses(r.text)).toEqual([200, 200]);
    expect(seen.map(([url]) => url)).toEqual(['/one', '/two']);
    expect(seen[1][1]).toEqual(['Host', 'x', 'Connection', 'close']);
  });

  it('nothing after an answer that closes the connection is taken, and a refused client is let go even if it never closes', async () => {
    const urls: string[] = [];
    const { port, server } = await serve((req, res) => {
      urls.push(req.url);
      ok()(req, res);
    }, {}, { headersTimeout: 2000, keepAliveTimeout: 300 });
    // No Host: 400 and close; the request behind it must never reach the handler.
    const r = await exchange(port, 'GET /nohost HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(statuses(r.text)).toEqual([400]);
    expect(urls).toEqual([]);
    // A client that keeps its side open after a 400 is let go by lb at keepAliveTimeout.
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => c.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n'));
    cleanup.push(() => c.destroy());
    c.on('error', () => undefined);
    let answer = '';
    c.on('data', (d: Buffer) => (answer += d));
    for (let i = 0; i < 50 && !answer; i++) await new Promise((r) => setTimeout(r, 20));
    expect(statuses(answer)).toEqual([400]);
    expect(server.connections).toBe(1);
    for (let i = 0; i < 150 && server.connections > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(server.connections).toBe(0);
  });

  it('an Upgrade request on a listener without upgrades is answered as a plain one, and what follows it in the same read too', async () => {
    const urls: string[] = [];
    const { port } = await serve((req, res) => {
      urls.push(req.url);
      ok()(req, res);
    });
    const r = await exchange(port, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(urls).toEqual(['/ws', '/next']);
    expect(statuses(r.text)).toEqual([200, 200]);
  });

  it('graceful close: idle connections are closed at once, a busy one when its answer is done', async () => {
    let answer!: () => void;
    const { port, server } = await serve((_req, res) => {
      answer = () => ok()(_req, res);
    });
    const idle = net.connect(port, '127.0.0.1');
    const idleClosed = new Promise<void>((r) => idle.on('close', () => r()));
    idle.on('error', () => undefined);
    await new Promise((r) => idle.on('connect', r));
    const busy = exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 3000);
    for (let i = 0; i < 100 && !answer; i++) await new Promise((r) => setTimeout(r, 10));
    const done = new Promise<void>((r) => server.close(() => r()));
    await idleClosed;
    answer();
    const r = await busy;
    expect(statuses(r.text)).toEqual([200]);
    expect(r.text).toMatch(/connection: close/);
    expect(r.closed).toBe(true);
    await done;
  });
});
