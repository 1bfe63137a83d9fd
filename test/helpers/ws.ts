import WebSocket, { WebSocketServer } from 'ws';
import { onTestFinished } from 'vitest';
import { startBackend, type TestBackend } from './backends.js';

export interface WsBackend extends TestBackend {
  wss: WebSocketServer;
  /** Bytes of every message the backend received, in order. */
  received: Buffer[];
  /** Headers of every upgrade request that reached the backend. */
  upgrades: Array<Record<string, string | string[] | undefined>>;
  /** Close codes the backend saw from lb, in order. */
  closes: number[];
  /** Kill every open WebSocket at the TCP level and stop listening (a crash). */
  crash(): Promise<void>;
}

/**
 * A real HTTP + WebSocket echo backend on port 0. The 101 carries `x-backend: ID`; every message
 * is echoed back as received (binary stays binary).
 */
export async function startWsBackend(id: string): Promise<WsBackend> {
  const b = await startBackend(id);
  const wss = new WebSocketServer({ server: b.server, maxPayload: 64 * 1024 * 1024 });
  const received: Buffer[] = [];
  const closes: number[] = [];
  const upgrades: WsBackend['upgrades'] = [];
  wss.on('headers', (headers) => headers.push(`x-backend: ${id}`));
  wss.on('connection', (ws, req) => {
    upgrades.push({ ...req.headers, ':path': req.url });
    ws.on('message', (data: Buffer, isBinary) => {
      received.push(data);
      ws.send(data, { binary: isBinary });
    });
    ws.on('close', (code) => closes.push(code));
    ws.on('error', () => undefined);
  });
  const crash = async (): Promise<void> => {
    for (const c of wss.clients) c.terminate();
    await b.close();
  };
  onTestFinished(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return Object.assign(b, { wss, received, closes, upgrades, crash });
}

export interface OpenWs {
  ws: WebSocket;
  /** The backend named on the 101. */
  backend: string;
  /** Set-Cookie headers on the 101. */
  setCookie: string[];
  /** Resolves with the close code once closed. */
  closed: Promise<{ code: number; at: number }>;
}

/** Open a WebSocket through lb; resolves once the 101 arrived. */
export function openWs(url: string, headers: Record<string, string> = {}): Promise<OpenWs> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, maxPayload: 64 * 1024 * 1024 });
    onTestFinished(() => ws.terminate());
    let backend = '';
    let setCookie: string[] = [];
    ws.once('upgrade', (res) => {
      backend = String(res.headers['x-backend']);
      setCookie = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
    });
    const closed = new Promise<{ code: number; at: number }>((r) => ws.once('close', (code) => r({ code, at: Date.now() })));
    ws.once('open', () => resolve({ ws, backend, setCookie, closed }));
    ws.once('error', reject);
    ws.on('error', () => undefined);
  });
}

/** Send one message and wait for the next message back. */
export function echo(ws: WebSocket, data: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    ws.once('message', (d: Buffer) => resolve(d));
    ws.once('close', () => reject(new Error('closed before the echo')));
    ws.send(data);
  });
}
