import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';
import { deadPort } from './backends.js';
import { startLbProcess } from './process.js';

export interface Logged {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/** A backend that logs exactly what it receives: every parsed request (with body) and the raw bytes. */
export async function startLoggingBackend(answer?: (req: Logged, res: http.ServerResponse) => void): Promise<{ url: string; port: number; logged: Logged[]; raw: () => string; server: http.Server }> {
  const logged: Logged[] = [];
  const chunks: Buffer[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const l = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body };
      logged.push(l);
      if (answer) answer(l, res);
      else res.end(JSON.stringify({ url: req.url, body }));
    });
  });
  server.on('connection', (s) => s.on('data', (d: Buffer) => chunks.push(d)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, port, logged, raw: () => Buffer.concat(chunks).toString('latin1'), server };
}

/** A raw TCP backend answering every connection with `reply` (bad framing, bad status lines…). */
export async function startRawBackend(reply: (socket: net.Socket) => void): Promise<{ url: string }> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => reply(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(() => server.close());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Send raw bytes, collect everything until the server closes (or `waitMs` passes). */
export function exchange(port: number, bytes: string | Buffer, waitMs = 2000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      c.destroy();
      resolve({ text, closed: false });
    }, waitMs);
    c.setEncoding('latin1');
    c.on('data', (d: string) => (text += d));
    c.on('error', () => undefined);
    c.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    c.write(bytes);
  });
}

/** lb as a real process from YAML (`${PORT}` = its listener port, `${DIR}` = a temp dir). */
export async function lbProcess(yaml: string): Promise<{ port: number; dir: string; proc: Awaited<ReturnType<typeof startLbProcess>> }> {
  const dir = mkdtempSync(join(tmpdir(), 'lb-sec-'));
  const port = await deadPort();
  const file = join(dir, 'lb.yaml');
  writeFileSync(file, yaml.replaceAll('${PORT}', String(port)).replaceAll('${DIR}', dir));
  const proc = await startLbProcess(file);
  return { port, dir, proc };
}

/** Status codes of every response in a raw HTTP/1.1 answer stream. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}
