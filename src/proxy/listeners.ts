import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
import type { ListenerConfig, TimeoutsConfig } from '../config/types.js';
import { hostOnly } from './routes.js';
import { HttpServer, type ProxyRequest, type ProxyResponse } from './server.js';
import type { ParseError } from './llhttp.js';

export interface Listener {
  readonly config: ListenerConfig;
  readonly server: HttpServer;
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
  onRequest: (req: ProxyRequest, res: ProxyResponse) => void;
  onUpgrade?: (req: ProxyRequest, socket: Socket, head: Buffer) => void;
}

/** 308 to the same host and path on the HTTPS port (keeps method and body, RFC 9110 §15.4.9). */
function redirectHandler(port: number) {
  return (req: ProxyRequest, res: ProxyResponse): void => {
    const host = hostOnly(req.headers.host) || 'localhost';
    const location = `https://${host}${port === 443 ? '' : `:${port}`}${req.url}`;
    res.writeHead(308, { location, 'content-length': 0, 'cache-control': 'no-store' });
    res.end();
  };
}

/** What a client that sent something unparseable (or too slowly) gets before its connection ends. */
function clientErrorAnswer(err: ParseError): { status: number; text: string } {
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  return { status, text: STATUS_CODES[status]! };
}

export async function openListener(config: ListenerConfig, deps: ListenerDeps): Promise<Listener> {
  const redirect = config.redirectToHttps !== undefined;
  // Strict parsing always (RFC 9112): src/proxy/server.ts never sets llhttp's lenient flags.
  const server = new HttpServer(
    {
      headersTimeout: deps.timeouts.requestHeaders,
      keepAliveTimeout: deps.timeouts.keepAlive,
      tls: config.protocol === 'https' ? deps.tls : undefined,
    },
    {
      onRequest: redirect ? redirectHandler(config.redirectToHttps!) : deps.onRequest,
      onUpgrade: redirect ? undefined : deps.onUpgrade,
      onClientError(err, socket) {
        if (!socket.writable) return void socket.destroy();
        const { status, text } = clientErrorAnswer(err);
        socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      },
    },
  );
  const sockets = server.server;
  await new Promise<void>((resolve, reject) => {
    sockets.once('error', reject);
    sockets.listen(config.port, config.host, () => {
      sockets.off('error', reject);
      resolve();
    });
  });
  return {
    config,
    server,
    port: () => {
      const a = sockets.address();
      return typeof a === 'object' && a ? a.port : config.port;
    },
    setSecureContext(opts) {
      if (config.protocol === 'https') (sockets as TlsServer).setSecureContext(opts);
    },
    close: (forceAfter) => closeGracefully(server, forceAfter),
  };
}

/** Stop accepting, close idle keep-alive connections as they become idle, force the rest at the deadline. */
function closeGracefully(server: HttpServer, forceAfter: number): Promise<void> {
  return new Promise((resolve) => {
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    const force = setTimeout(() => server.closeAllConnections(), forceAfter);
    server.close(() => {
      clearInterval(idle);
      clearTimeout(force);
      resolve();
    });
  });
}
