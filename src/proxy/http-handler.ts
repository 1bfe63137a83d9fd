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

/**
 * The HTTP request path: route → affinity+policy → header transforms → forward (the only I/O).
 * Callbacks, not async functions: a request that succeeds at its first backend runs start to end
 * in the upstream socket's callbacks, with no promise and no microtask hop (`--cpu-prof` put the
 * async machinery at ~2 % of a proxied request's CPU).
 */
export function createHttpHandler(listener: ListenerConfig, deps: ProxyDeps) {
  const proto = listener.protocol;
  return function handle(req: ProxyRequest, res: ProxyResponse): void {
    const started = deps.now();
    const reqId = requestIdOf(req.headers['x-request-id']);
    const rec: AccessRecord = { method: req.method, path: req.url, status: 0, ms: 0, bytes: 0, reqId, retries: 0 };
    let a: Attempt;
    try {
      sanitizeRequest(req);
      rec.path = req.url;
      const { pool, decision, ctx } = resolveRequest(listener, deps, req, reqId);
      rec.pool = pool.name;
      a = { req, res, pool, first: decision, ctx, rec, deps, proto, started, deadline: started + deps.retries.budget, tried: undefined };
    } catch (err) {
      return failed({ req, res, rec, deps, started }, err);
    }
    attempt(a, a.first);
  };
}

/** What the access log needs once the response is over. */
interface Request {
  req: ProxyRequest;
  res: ProxyResponse;
  rec: AccessRecord;
  deps: ProxyDeps;
  started: number;
}

interface Attempt extends Request {
  pool: PoolRuntime;
  /** The first decision; `ctx` describes it (a retry's context differs). */
  first: Decision;
  ctx: HeaderContext;
  proto: 'http' | 'https';
  /** No retry starts after this (ms, deps.now's clock). */
  deadline: number;
  /** Backends already tried, made on the first retry (most requests have none). */
  tried: Set<Backend> | undefined;
}

/** Log the request when its response is over (now, or when the client connection closes). */
function logged(r: Request): void {
  if (r.res.writableFinished || r.res.destroyed) return log(r);
  r.res.once('close', () => log(r));
}

function log(r: Request): void {
  r.rec.ms = r.deps.now() - r.started;
  r.deps.onAccess(r.rec);
}

/** The request failed without a response from a backend: lb answers (a 4xx/5xx with its code). */
function failed(r: Request, err: unknown): void {
  const e = err instanceof LbError ? err : new LbError('LB_BACKEND_PROTOCOL', 'internal error', { cause: err });
  r.rec.status = e.status;
  r.rec.error = e.code;
  sendError(r.res, e, r.rec.reqId);
  logged(r);
}

/** One try at `decision`'s backend; settled() decides what follows. */
function attempt(a: Attempt, decision: Decision): void {
  const { req, rec, pool } = a;
  const backend = decision.backend;
  a.tried?.add(backend);
  rec.backend = backend.id;
  rec.affinity = decision.result;
  rec.reason = reasonOf(decision);
  rec.fallback = decision.fallback || undefined;
  let headers: string[];
  try {
    const ctx = decision === a.first ? a.ctx : { ...a.ctx, repinned: repinnedValue(decision) };
    headers = requestHeaders(req.rawHeaders, ctx);
  } catch (err) {
    return failed(a, err);
  }
  backend.inFlight++;
  let pending = true;
  /** The attempt's one end: false when it had ended already. */
  const end = (): boolean => {
    if (!pending) return false;
    pending = false;
    backend.inFlight--;
    return true;
  };
  const settle = (outcome: ForwardOutcome): void => {
    if (!end()) return;
    // A response that completed goes on here, in the backend socket's callback. Anything else
    // waits for the callback to unwind (a microtask), so a retry never starts inside the
    // failing connection's own teardown.
    if (outcome.ok) settled(a, decision, outcome);
    else queueMicrotask(() => settled(a, decision, outcome));
  };
  try {
    forward(
      {
        upstream: backend.upstream,
        req,
        res: a.res,
        path: rec.path,
        headers,
        timeout: a.deps.timeouts.backendResponse,
        onResponse: (_status, out) => {
          const cookie = pool.affinity.persist(decision, a.proto === 'https');
          if (cookie) addSetCookie(out, cookie);
        },
      },
      settle,
    );
  } catch (err) {
    // Thrown after the outcome was settled: that outcome stands (as a promise resolved before its executor threw).
    if (end()) failed(a, err);
  }
}

/** An attempt ended: log a response, retry elsewhere (SPEC §5), or answer with the error. */
function settled(a: Attempt, decision: Decision, outcome: ForwardOutcome): void {
  const { req, res, pool, deps, rec } = a;
  const backend = decision.backend;
  let next: Backend | undefined;
  try {
    deps.onAttempt?.(backend, outcome);
    if (outcome.ok || outcome.responded) {
      rec.status = outcome.status;
      rec.bytes = outcome.bytes;
      if (!outcome.ok) rec.error = outcome.error.code;
      return logged(a);
    }
    if (res.destroyed) {
      rec.status = 499;
      rec.error = 'LB_CLIENT_CLOSED';
      return logged(a);
    }
    // SPEC §5 retries: idempotent requests that could not connect or were reset before any
    // response byte. Others never by default (a POST to a dead backend gets 502); with
    // retries.nonIdempotent, only when nothing of them was sent (connect failed, no body byte read).
    const code = outcome.error.code;
    const body = req.body !== null;
    const again =
      (IDEMPOTENT.has(rec.method) && !body && (code === 'LB_BACKEND_CONNECT' || code === 'LB_BACKEND_RESET')) ||
      (deps.retries.nonIdempotent && code === 'LB_BACKEND_CONNECT' && (!body || !req.readableDidRead));
    if (again && deps.now() < a.deadline && rec.retries < deps.retries.tries) next = deps.balancer.retryTarget(pool, (a.tried ??= new Set([backend])));
    if (!next) return failed(a, outcome.error);
  } catch (err) {
    return failed(a, err);
  }
  rec.retries++;
  attempt(a, retried(decision, next));
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
