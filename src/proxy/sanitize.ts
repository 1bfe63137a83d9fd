import type { ProxyRequest } from './server.js';
import { LbError } from '../util/errors.js';
import { fieldIs } from './headers.js';

/** HAProxy's default tune.http.maxhdr is 101; browsers send about 20. */
export const MAX_HEADER_FIELDS = 100;

/**
 * What Node's strict parser (never insecureHTTPParser) leaves to us, checked before anything is
 * forwarded (RFC 9112 §3.2, §3.2.2):
 * - more than one Host field → 400 (a second Host is how requests get routed one way and served another);
 * - more than MAX_HEADER_FIELDS fields → 431 (Node would silently drop fields past its own limit);
 * - an absolute-form target (`GET http://host/path`) becomes origin-form, and its authority
 *   replaces Host, as an origin server must treat it; any other non-origin form → 400.
 * Mutates `req.url` and `req.rawHeaders` so the rest of the path sees one normalized request.
 */
export function sanitizeRequest(req: ProxyRequest): void {
  const raw = req.rawHeaders;
  if (raw.length / 2 > MAX_HEADER_FIELDS) throw new LbError('LB_HEADERS_TOO_LARGE', `more than ${MAX_HEADER_FIELDS} header fields`);
  let hostAt = -1;
  for (let i = 0; i < raw.length; i += 2) {
    if (fieldIs(raw[i], 'host')) {
      if (hostAt !== -1) throw new LbError('LB_BAD_REQUEST', 'more than one Host header');
      hostAt = i;
    }
  }
  const url = req.url;
  if (url.startsWith('/') || (url === '*' && req.method === 'OPTIONS')) return;
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new LbError('LB_BAD_REQUEST', 'request target is not in origin or absolute form');
  }
  if ((target.protocol !== 'http:' && target.protocol !== 'https:') || !target.host || target.username || target.password) {
    throw new LbError('LB_BAD_REQUEST', 'request target is not an http(s) URL');
  }
  req.url = target.pathname + target.search;
  if (hostAt === -1) raw.push('Host', target.host);
  else raw[hostAt + 1] = target.host;
  req.headers.host = target.host;
}
