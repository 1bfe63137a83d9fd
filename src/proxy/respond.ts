import type { ProxyResponse } from './server.js';
import type { LbError } from '../util/errors.js';

const TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A short plain-text error answer; if the response already started, abort the connection instead. */
export function sendError(res: ProxyResponse, err: LbError, reqId: string): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  if (res.destroyed) return;
  const body = `${err.status} ${TEXT[err.status] ?? 'Error'}: ${err.message}\n`;
  res.writeHead(err.status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-request-id': reqId,
    // A request lb refused as malformed, or whose body stopped coming, may have left anything in
    // the connection: close it.
    ...(err.status === 400 || err.status === 408 || err.status === 431 ? { connection: 'close' } : {}),
  });
  res.end(body);
}
