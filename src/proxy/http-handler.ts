import type { ProxyRequest, ProxyResponse } from './server.js';
import type { BlockList } from 'node:net';
import type { ListenerConfig, RetryConfig, TimeoutsConfig } from '../config/types.js';
import type { Balancer, PoolRuntime } from '../balancer/balancer.js';
import type { Decision } from '../affinity/types.js';
import type { Backend } from '../balancer/types.js';
import { sanitizeRequest } from './sanitize.js';
import { LbError } from '../util/errors.js';
import { clientAddress, isTrusted, normalizeIp } from './cidr.js';
import { get, requestHeaders, requestIdOf, type HeaderContext } from './headers.js';
import { forward, type ForwardOutcome } from './forward.js';
import type { RouteFacts } from './routes.js';
import { sendError } from './respond.js';

export interface AccessRecord {
  method: string;
  path: string;
  status: number;
  pool?: string;
  backend?: string;
  affinity?: string;
  reason?: string;
  fallback?: boolean;
  ms: number;
  bytes: number;
  reqId: string;
  retries: number;
  error?: string;
  websocket?: boolean;
}

export interface ProxyDeps {
  balancer: Balancer;
  /** The pool for a request: routes first, then the listener's pool. */
  route: (facts: RouteFacts) => string | undefined;
  trust: BlockList;
  timeouts: TimeoutsConfig;
  retries: RetryConfig;
  forwarded: boolean;
  now: () => number;
  onAccess: (rec: AccessRecord) => void;
  /** Reports each attempt's outcome per backend (passive health, metrics). */
  onAttempt?: (backend: Backend, outcome: ForwardOutcome) => void;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

export function repinnedValue(d: Decision): string | undefined {
  return d.result === 'repin' ? `${d.repinnedFrom}; reason=${d.repinReason}` : undefined;
}

/** The access log's and metrics' reason: why a session moved, or why its cookie was rejected. */
export function reasonOf(d: Decision): string | undefined {
  return d.repinReason ?? (d.lookup.kind === 'rejected' ? d.lookup.reason : undefined);
}

export interface Resolved {
  pool: PoolRuntime;
  decision: Decision;
  ctx: HeaderContext;
}

/**
 * Route, read affinity, place: everything before I/O, shared by HTTP requests and WebSocket
 * upgrades so both follow the same routes and affinity. Throws LbError (503) when nothing fits.
 */
export function resolveRequest(listener: ListenerConfig, deps: ProxyDeps, req: ProxyRequest, reqId: string): Resolved {
  const method = req.method;
  const path = req.url;
  const poolName = deps.route({ method, path, headers: req.headers, listener: listener.name });
  const pool = poolName === undefined ? undefined : deps.balancer.pool(poolName);
  if (!pool) throw new LbError('LB_NO_BACKEND', 'no pool for this request');
  const peer = normalizeIp(req.socket.remoteAddress);
  const facts = { headers: req.headers, url: path, clientIp: clientAddress(deps.trust, peer, req.headers['x-forwarded-for']) };
  const decision = deps.balancer.decide(pool, facts);
  if (!decision) throw new LbError('LB_NO_BACKEND', 'no backend available');
  if (decision.result === 'repin' && pool.config.affinity.strict) {
    throw new LbError('LB_AFFINITY_STRICT', `session backend unavailable (${decision.repinReason})`);
  }
  const ctx: HeaderContext = {
    peer,
    trusted: isTrusted(deps.trust, peer),
    proto: listener.protocol,
    port: req.socket.localPort ?? listener.port,
    affinityCookie: pool.config.affinity.mode === 'cookie' ? pool.config.affinity.cookie.name : undefined,
    requestId: reqId,
    forwarded: deps.forwarded,
    repinned: repinnedValue(decision),
  };
  return { pool, decision, ctx };
}

/** The HTTP request path: route → affinity+policy → header transforms → forward (the only I/O). */
export function createHttpHandler(listener: ListenerConfig, deps: ProxyDeps) {
  const proto = listener.protocol;
  return async function handle(req: ProxyRequest, res: ProxyResponse): Promise<void> {
    const started = deps.now();
    const reqId = requestIdOf(req.headers['x-request-id']);
    const rec: AccessRecord = { method: req.method, path: req.url, status: 0, ms: 0, bytes: 0, reqId, retries: 0 };
    const log = (): void => {
      rec.ms = deps.now() - started;
      deps.onAccess(rec);
    };
    try {
      sanitizeRequest(req);
      rec.path = req.url;
      const { pool, decision, ctx } = resolveRequest(listener, deps, req, reqId);
      rec.pool = pool.name;
      await proxyWithRetries({ req, res, pool, decision, ctx, rec, deps, proto });
    } catch (err) {
      const e = err instanceof LbError ? err : new LbError('LB_BACKEND_PROTOCOL', 'internal error', { cause: err });
      rec.status = e.status;
      rec.error = e.code;
      sendError(res, e, reqId);
    } finally {
      if (res.writableFinished || res.destroyed) log();
      else res.once('close', log);
    }
  };
}

interface Attempt {
  req: ProxyRequest;
  res: ProxyResponse;
  pool: PoolRuntime;
  decision: Decision;
  ctx: HeaderContext;
  rec: AccessRecord;
  deps: ProxyDeps;
  proto: 'http' | 'https';
}

async function proxyWithRetries(a: Attempt): Promise<void> {
  const { req, res, pool, deps, rec } = a;
  let decision = a.decision;
  const body = req.body !== null;
  const retryable = IDEMPOTENT.has(rec.method) && !body;
  const deadline = deps.now() + deps.retries.budget;
  /** Backends already tried, made on the first retry (most requests have none). */
  let tried: Set<Backend> | undefined;
  for (;;) {
    const backend = decision.backend;
    tried?.add(backend);
    rec.backend = backend.id;
    rec.affinity = decision.result;
    rec.reason = reasonOf(decision);
    rec.fallback = decision.fallback || undefined;
    // The context resolveRequest made already describes the first decision; a retry's differs.
    const ctx = decision === a.decision ? a.ctx : { ...a.ctx, repinned: repinnedValue(decision) };
    const headers = requestHeaders(req.rawHeaders, ctx);
    const current = decision;
    backend.inFlight++;
    let outcome: ForwardOutcome;
    try {
      outcome = await forward({
        upstream: backend.upstream,
        req,
        res,
        path: rec.path,
        headers,
        timeout: deps.timeouts.backendResponse,
        onResponse: (_status, out) => {
          const cookie = pool.affinity.persist(current, a.proto === 'https');
          if (cookie) addSetCookie(out, cookie);
        },
      });
    } finally {
      backend.inFlight--;
    }
    deps.onAttempt?.(backend, outcome);
    if (outcome.ok || outcome.responded) {
      rec.status = outcome.status;
      rec.bytes = outcome.bytes;
      if (!outcome.ok) rec.error = outcome.error.code;
      return;
    }
    if (res.destroyed) {
      rec.status = 499;
      rec.error = 'LB_CLIENT_CLOSED';
      return;
    }
    // SPEC §5 retries: idempotent requests that could not connect or were reset before any
    // response byte. Others never by default (a POST to a dead backend gets 502); with
    // retries.nonIdempotent, only when nothing of them was sent (connect failed, no body byte read).
    const code = outcome.error.code;
    const again =
      (retryable && (code === 'LB_BACKEND_CONNECT' || code === 'LB_BACKEND_RESET')) ||
      (deps.retries.nonIdempotent && code === 'LB_BACKEND_CONNECT' && (!body || !req.readableDidRead));
    const next = again && deps.now() < deadline && rec.retries < deps.retries.tries ? deps.balancer.retryTarget(pool, (tried ??= new Set([backend]))) : undefined;
    if (!next) throw outcome.error;
    rec.retries++;
    decision = retried(decision, next);
  }
}

/** A retry moves the request (and a pinned session) to another backend: a repin for reason down. */
function retried(d: Decision, next: Backend): Decision {
  if (d.lookup.kind !== 'pinned') return { ...d, backend: next };
  return { ...d, backend: next, result: 'repin', repinnedFrom: d.lookup.backendId, repinReason: 'down' };
}

/** Adds lb's cookie; marks the response private unless the app chose caching itself (HAProxy `nocache`). */
function addSetCookie(out: string[], cookie: string): void {
  out.push('set-cookie', cookie);
  if (get(out, 'cache-control') === undefined) out.push('cache-control', 'private');
}
