import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import type { ListenerConfig, TimeoutsConfig } from '../config/types.js';
import { hostOnly } from './routes.js';

export interface Listener {
  readonly config: ListenerConfig;
  readonly server: http.Server | https.Server;
  /** The bound port (differs from config when configured as 0). */
  port(): number;
  /** Swap the certificate: new handshakes use it, open connections keep theirs. */
  setSecureContext(opts: SecureContextOptions): void;
  /** Stop accepting; resolves when every connection has closed (or `forceAfter` ms passed). */
  close(forceAfter: number): Promise<void>;
}

export interface ListenerDeps {
  timeouts: TimeoutsConfig;
  tls?: SecureContextOptions;
  onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  onUpgrade?: (req: http.IncomingMessage, socket: Socket, head: Buffer) => void;
  onClientError?: (err: Error, socket: Socket) => void;
}

/** 308 to the same host and path on the HTTPS port (keeps method and body, RFC 9110 §15.4.9). */
function redirectHandler(port: number) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const host = hostOnly(req.headers.host) || 'localhost';
    const location = `https://${host}${port === 443 ? '' : `:${port}`}${req.url ?? '/'}`;
    res.writeHead(308, { location, 'content-length': 0, 'cache-control': 'no-store' });
    res.end();
  };
}

export async function openListener(config: ListenerConfig, deps: ListenerDeps): Promise<Listener> {
  const options: http.ServerOptions = {
    headersTimeout: deps.timeouts.requestHeaders,
    // Node checks the headers deadline only every connectionsCheckingInterval (30 s by default):
    // check often enough that a slowloris client is cut off close to requestHeaders.
    connectionsCheckingInterval: Math.max(250, Math.min(1000, deps.timeouts.requestHeaders / 4)),
    requestTimeout: 0,
    keepAliveTimeout: deps.timeouts.keepAlive,
    // Strict parsing always (RFC 9112); never insecureHTTPParser.
    insecureHTTPParser: false,
    joinDuplicateHeaders: false,
  };
  const handler = config.redirectToHttps !== undefined ? redirectHandler(config.redirectToHttps) : deps.onRequest;
  const server =
    config.protocol === 'https'
      ? https.createServer({ ...options, ...deps.tls }, handler)
      : http.createServer(options, handler);
  if (deps.onUpgrade && config.redirectToHttps === undefined) server.on('upgrade', deps.onUpgrade);
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    deps.onClientError?.(err, socket);
    if (!socket.writable || (err.code === 'ECONNRESET')) return socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const text = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
    socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    config,
    server,
    port: () => {
      const a = server.address();
      return typeof a === 'object' && a ? a.port : config.port;
    },
    setSecureContext(opts) {
      if (server instanceof https.Server) server.setSecureContext(opts);
    },
    close: (forceAfter) => closeGracefully(server, forceAfter),
  };
}

/** Stop accepting, close idle keep-alive connections as they become idle, force the rest at the deadline. */
function closeGracefully(server: http.Server, forceAfter: number): Promise<void> {
  return new Promise((resolve) => {
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    const force = setTimeout(() => server.closeAllConnections(), forceAfter);
    server.close(() => {
      clearInterval(idle);
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
