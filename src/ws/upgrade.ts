import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { ProxyRequest } from '../proxy/server.js';
import type { ListenerConfig } from '../config/types.js';
import { LbError, classifyUpstreamError } from '../util/errors.js';
import { asksForWebSocket, requestHeaders, requestIdOf } from '../proxy/headers.js';
import { reasonOf, resolveRequest, type AccessRecord, type ProxyDeps } from '../proxy/http-handler.js';
import type { Decision } from '../affinity/types.js';
import type { PoolRuntime } from '../balancer/balancer.js';
import { Tunnel } from './tunnel.js';
import { sanitizeRequest } from '../proxy/sanitize.js';
import type { WsRegistry } from './registry.js';

export interface UpgradeDeps extends ProxyDeps {
  registry: WsRegistry;
  /** TLS options for https:// backends, per pool. */
  backendTls: (pool: PoolRuntime) => https.RequestOptions;
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/** An HTTP answer written on a raw socket that never became a tunnel, then the socket ends. */
function rawError(socket: Duplex, status: number, message: string, reqId: string): void {
  if (!socket.writable) return void socket.destroy();
  const body = `${status} ${STATUS_TEXT[status] ?? 'Error'}: ${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${reqId}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function head(status: number, message: string, raw: string[], extra: string[] = []): string {
  let out = `HTTP/1.1 ${status} ${message}\r\n`;
  for (let i = 0; i < raw.length; i += 2) out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  for (let i = 0; i < extra.length; i += 2) out += `${extra[i]}: ${extra[i + 1]}\r\n`;
  return out + '\r\n';
}

/**
 * The upgrade path (SPEC §4): same routes and affinity as HTTP; the backend's 101 gets lb's
 * Set-Cookie when the client had no valid cookie; any other answer is relayed as a plain HTTP
 * response and no tunnel is kept (no upgrade smuggling).
 */
export function createUpgradeHandler(listener: ListenerConfig, deps: UpgradeDeps) {
  return function onUpgrade(req: ProxyRequest, socket: Duplex, clientHead: Buffer): void {
    const started = deps.now();
    const reqId = requestIdOf(req.headers['x-request-id']);
    const rec: AccessRecord = { method: req.method, path: req.url, status: 0, ms: 0, bytes: 0, reqId, retries: 0, websocket: true };
    const log = (status: number, error?: string): void => {
      rec.status = status;
      if (error) rec.error = error;
      rec.ms = deps.now() - started;
      deps.onAccess(rec);
    };
    const onClientError = (): void => void socket.destroy();
    socket.on('error', onClientError);
    if (!asksForWebSocket(req.rawHeaders) || req.method !== 'GET') {
      log(400, 'LB_BAD_UPGRADE');
      return rawError(socket, 400, 'only WebSocket upgrades (GET, Upgrade: websocket) are supported', reqId);
    }
    let resolved;
    try {
      sanitizeRequest(req);
      resolved = resolveRequest(listener, deps, req, reqId);
    } catch (err) {
      const e = err as LbError;
      log(e.status ?? 503, e.code);
      return rawError(socket, e.status ?? 503, e.message, reqId);
    }
    const { pool, decision, ctx } = resolved;
    Object.assign(rec, { pool: pool.name, backend: decision.backend.id, affinity: decision.result, reason: reasonOf(decision), fallback: decision.fallback || undefined });
    const headers = requestHeaders(req.rawHeaders, ctx);
    headers.push('connection', 'Upgrade', 'upgrade', 'websocket');
    const b = decision.backend;
    const secure = b.url.protocol === 'https:';
    const outgoing = (secure ? https : http).request({
      host: b.url.hostname,
      port: b.url.port || (secure ? 443 : 80),
      method: 'GET',
      path: req.url,
      headers,
      agent: false,
      timeout: deps.timeouts.connect,
      ...(secure ? deps.backendTls(pool) : {}),
    });
    b.inFlight++;
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      b.inFlight--;
      return true;
    };
    const onClientClose = (): void => {
      if (settle()) outgoing.destroy();
    };
    socket.once('close', onClientClose);
    const headersTimer = setTimeout(() => outgoing.destroy(new LbError('LB_BACKEND_TIMEOUT', 'backend did not answer the upgrade')), deps.timeouts.backendResponse);
    headersTimer.unref();
    outgoing.on('timeout', () => outgoing.destroy(new LbError('LB_BACKEND_CONNECT', 'backend connect timed out')));
    outgoing.on('error', (err) => {
      clearTimeout(headersTimer);
      if (!settle()) return;
      const e = classifyUpstreamError(err);
      log(e.status, e.code);
      rawError(socket, e.status, e.message, reqId);
    });
    outgoing.on('response', (res) => {
      // Refused upgrade: relay the answer as a normal response, then close. No tunnel.
      clearTimeout(headersTimer);
      settle();
      const cookie = pool.affinity.persist(decision, listener.protocol === 'https');
      socket.write(head(res.statusCode ?? 502, res.statusMessage ?? '', stripFraming(res.rawHeaders), cookie ? ['set-cookie', cookie, 'connection', 'close'] : ['connection', 'close']));
      res.on('data', (c: Buffer) => socket.write(c));
      // The backend connection served one refused upgrade: let it go (nothing else may reuse it).
      const conn = res.socket;
      const done = (): void => void conn.destroy();
      res.on('end', () => {
        socket.end();
        done();
      });
      res.on('error', () => {
        socket.destroy();
        done();
      });
      socket.once('close', done);
      log(res.statusCode ?? 502);
    });
    outgoing.on('upgrade', (res, backendSocket: Duplex, backendHead: Buffer) => {
      clearTimeout(headersTimer);
      if (!settle()) return void backendSocket.destroy();
      // From here the tunnel owns both sockets. Drop every listener that closes over this
      // request's context (req, outgoing, headers): an idle tunnel must not keep them alive.
      socket.off('close', onClientClose);
      socket.off('error', onClientError);
      outgoing.removeAllListeners();
      outgoing.on('error', () => undefined);
      const cookie = pool.affinity.persist(decision, listener.protocol === 'https');
      socket.write(head(101, res.statusMessage || 'Switching Protocols', res.rawHeaders, cookie ? ['set-cookie', cookie] : []));
      open(deps, decision, pool, socket, backendSocket, { clientHead, backendHead });
      log(101);
    });
    outgoing.end();
  };
}

/** The relayed refusal is re-framed by `connection: close`; drop framing fields that would conflict. */
function stripFraming(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i].toLowerCase();
    if (n === 'connection' || n === 'keep-alive' || n === 'transfer-encoding' || n === 'upgrade') continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

function open(deps: UpgradeDeps, decision: Decision, pool: PoolRuntime, client: Duplex, backend: Duplex, heads: { clientHead: Buffer; backendHead: Buffer }): void {
  // Bytes that arrived with the upgrade go first, through the tunnel's frame trackers.
  if (heads.backendHead.length) backend.unshift(heads.backendHead);
  if (heads.clientHead.length) client.unshift(heads.clientHead);
  const release = pool.affinity.hold(decision);
  let undo = (): void => undefined;
  const tunnel = new Tunnel(client, backend, {
    idleMs: deps.timeouts.websocketIdle,
    onEnd: () => {
      undo();
      release();
    },
  });
  undo = deps.registry.add(tunnel, decision.backend);
}
