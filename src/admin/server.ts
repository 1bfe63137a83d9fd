import http from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Control } from './control.js';
import { ApiError } from './errors.js';
import type { Insight } from './insight.js';

export interface AdminServerDeps {
  control: Control;
  insight: Insight;
  host: string;
  port: number;
  token?: string;
  /** Extra GET routes (metrics, dashboard, events) mounted by other modules; return false to pass. */
  extra?: Array<(req: http.IncomingMessage, res: http.ServerResponse, path: string) => boolean | Promise<boolean>>;
  /** Is lb ready to take traffic (listeners open, not stopping)? */
  ready: () => boolean;
  onChange?: (what: string, detail: Record<string, unknown>) => void;
}

const MAX_BODY = 1024 * 1024;
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}

/** Constant-time bearer token check (compares digests so lengths leak nothing either). */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  const a = createHash('sha256').update(m[1]).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

function send(res: http.ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status, { 'cache-control': 'no-store', 'content-length': 0 });
    res.end();
    return;
  }
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendApiError(res: http.ServerResponse, err: ApiError): void {
  send(res, err.status, { error: { code: err.code, message: err.message } });
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new ApiError('LB_TOO_LARGE', 'request body over 1 MiB');
    chunks.push(c as Buffer);
  }
  if (size === 0) return undefined;
  const type = req.headers['content-type'] ?? 'application/json';
  if (!/^application\/json\b/i.test(type)) throw new ApiError('LB_UNSUPPORTED_MEDIA', `expected application/json, got ${type}`);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new ApiError('LB_BAD_JSON', `malformed JSON: ${(err as Error).message}`);
  }
}

type Handler = (p: { req: http.IncomingMessage; id: string; body: () => Promise<unknown>; query: URLSearchParams }) => Promise<[number, unknown?]> | [number, unknown?];

/** The admin REST API (SPEC §6). Method + path pattern → handler; every error is JSON. */
export function routesFor(c: Control, insight: Insight, onChange: AdminServerDeps['onChange'] = () => undefined): Array<[string, RegExp, Handler]> {
  const changed = (what: string, id: string, info: unknown): [number, unknown] => {
    onChange(what, { backend: id });
    return [what === 'drain' ? 202 : what === 'add' ? 201 : 200, info];
  };
  return [
    ['GET', /^\/api\/v1\/backends$/, () => [200, { backends: c.list() }]],
    ['POST', /^\/api\/v1\/backends$/, async ({ body }) => {
      const info = await c.add(await body());
      return changed('add', info.id, info);
    }],
    ['GET', /^\/api\/v1\/backends\/([^/]+)$/, ({ id }) => [200, c.get(id)]],
    ['PATCH', /^\/api\/v1\/backends\/([^/]+)$/, async ({ id, body }) => changed('weight', id, await c.setWeight(id, await body()))],
    ['DELETE', /^\/api\/v1\/backends\/([^/]+)$/, async ({ id, query }) => {
      await c.remove(id, query.get('force') === 'true');
      onChange('remove', { backend: id });
      return [204];
    }],
    ['POST', /^\/api\/v1\/backends\/([^/]+)\/drain$/, async ({ id, body }) => changed('drain', id, await c.drain(id, await body()))],
    ['POST', /^\/api\/v1\/backends\/([^/]+)\/enable$/, async ({ id }) => changed('enable', id, await c.enable(id))],
    ['POST', /^\/api\/v1\/backends\/([^/]+)\/maint$/, async ({ id }) => changed('maint', id, await c.maint(id))],
    ['GET', /^\/api\/v1\/pools$/, () => [200, { pools: c.pools() }]],
    ['POST', /^\/api\/v1\/reload$/, async () => [200, await c.reload()]],
    ['GET', /^\/api\/v1\/state$/, () => [200, c.exportState()]],
    ['GET', /^\/api\/v1\/plan$/, ({ query }) => [200, insight.plan(query)]],
    ['GET', /^\/api\/v1\/explain$/, ({ query }) => [200, insight.explain(query)]],
    ['POST', /^\/api\/v1\/broadcast$/, async ({ body }) => [200, await insight.broadcast(await body())]],
    ['PUT', /^\/api\/v1\/state$/, async ({ body }) => [200, await c.importState(await body())]],
  ];
}

export async function openAdminServer(deps: AdminServerDeps): Promise<http.Server> {
  if (!isLoopback(deps.host) && !deps.token) {
    throw new Error(`admin listener on ${deps.host} is not loopback: set admin.token or LB_ADMIN_TOKEN`);
  }
  const routes = routesFor(deps.control, deps.insight, deps.onChange);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    try {
      if (path === '/healthz') return send(res, 200, { status: 'ok' });
      if (path === '/readyz') return deps.ready() ? send(res, 200, { status: 'ready' }) : send(res, 503, { status: 'not ready' });
      const protectedPath = path.startsWith('/api/') || path === '/metrics' || path.startsWith('/events');
      if (protectedPath && deps.token && !tokenMatches(req.headers.authorization, deps.token)) {
        res.setHeader('www-authenticate', 'Bearer realm="lb"');
        throw new ApiError('LB_UNAUTHORIZED', 'missing or wrong bearer token');
      }
      for (const mount of deps.extra ?? []) if (await mount(req, res, path)) return;
      let pathMatched = false;
      for (const [method, pattern, handler] of routes) {
        const m = pattern.exec(path);
        if (!m) continue;
        pathMatched = true;
        if (method !== req.method) continue;
        const [status, body] = await handler({ req, id: decodeURIComponent(m[1] ?? ''), body: () => readJson(req), query: url.searchParams });
        return send(res, status, body);
      }
      if (pathMatched) throw new ApiError('LB_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${path}`);
      throw new ApiError('LB_NOT_FOUND', `no route ${req.method} ${path}`);
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      if (err instanceof ApiError) return sendApiError(res, err);
      send(res, 500, { error: { code: 'LB_INTERNAL', message: (err as Error).message } });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.port, deps.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
