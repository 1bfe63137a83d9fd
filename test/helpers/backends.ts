import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
}

export interface TestBackend {
  id: string;
  port: number;
  url: string;
  seen: Seen[];
  server: http.Server;
  close(): Promise<void>;
}

/**
 * A real HTTP backend on port 0 that logs exactly what it receives. Routes:
 *   /slow?ms=N      answer after N ms
 *   /bytes?n=N      stream N bytes (64 KiB chunks, with backpressure)
 *   /upload         consume the body, answer {"bytes": N}
 *   /status?code=N  answer with status N
 *   anything else   JSON {id, method, url, headers}
 */
export async function startBackend(
  id: string,
  opts: { port?: number; handler?: http.RequestListener; health?: (req: http.IncomingMessage) => { status: number; headers?: Record<string, string>; body?: string } } = {},
): Promise<TestBackend> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders });
    if (opts.health && req.url === '/health') {
      const h = opts.health(req);
      res.writeHead(h.status, h.headers).end(h.body ?? 'ok');
      return;
    }
    if (opts.handler) return opts.handler(req, res);
    defaultHandler(id, req, res);
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const b: TestBackend = {
    id,
    port,
    url: `http://127.0.0.1:${port}`,
    seen,
    server,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
  onTestFinished(() => b.close());
  return b;
}

function defaultHandler(id: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url!, 'http://x');
  const q = (k: string): number => Number(url.searchParams.get(k) ?? 0);
  switch (url.pathname) {
    case '/slow':
      setTimeout(() => json(res, { id }), q('ms'));
      return;
    case '/status':
      res.writeHead(q('code'), { 'x-backend': id });
      res.end(`status ${q('code')} from ${id}\n`);
      return;
    case '/bytes':
      return streamBytes(res, q('n'), id);
    case '/upload': {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => json(res, { id, bytes }));
      return;
    }
    default:
      req.resume();
      req.on('end', () => json(res, { id, method: req.method, url: req.url, headers: req.headers }));
  }
}

function json(res: http.ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'x-backend': (body as { id: string }).id });
  res.end(text);
}

function streamBytes(res: http.ServerResponse, n: number, id: string): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n, 'x-backend': id });
  const chunk = Buffer.alloc(64 * 1024, 97);
  let left = n;
  const pump = (): void => {
    while (left > 0) {
      const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= c.length;
      if (!res.write(c)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

/** A port with nothing listening (bound then released). */
export async function deadPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
