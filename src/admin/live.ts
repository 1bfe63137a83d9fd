import type http from 'node:http';
import { readFile } from 'node:fs/promises';
import type { Control } from './control.js';
import type { Backend } from '../balancer/types.js';
import type { Registry } from '../balancer/registry.js';
import type { BackendInfo } from './wire.js';

type Mount = (req: http.IncomingMessage, res: http.ServerResponse, path: string) => boolean | Promise<boolean>;

/** `GET /metrics`: Prometheus text format. */
export function metricsMount(metrics: { text: () => Promise<string>; contentType: string }): Mount {
  return async (req, res, path) => {
    if (path !== '/metrics' || req.method !== 'GET') return false;
    const text = await metrics.text();
    res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
    res.end(text);
    return true;
  };
}

export interface LiveBackend extends BackendInfo {
  /** Requests per second over the last interval. */
  rps: number;
  /** Share of 5xx answers over the last interval, 0..1. */
  errorRate: number;
}

/**
 * `GET /api/v1/stream`: server-sent events, one snapshot of every pool and backend per second,
 * with requests/s and error rate computed from the metrics' running tallies. The dashboard reads
 * it with fetch() so the bearer token travels in a header, as for every other API call.
 */
export function streamMount(deps: { control: Control; tallies: (b: Backend) => { total: number; errors: number }; registry: Registry; intervalMs?: number }): Mount {
  const interval = deps.intervalMs ?? 1000;
  return (req, res, path) => {
    if (path !== '/api/v1/stream' || req.method !== 'GET') return false;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const previous = new Map<string, { total: number; errors: number; at: number }>();
    const send = (): void => {
      const now = Date.now();
      const pools = deps.control.pools().map((p) => ({
        name: p.name,
        affinity: p.affinity,
        balance: p.balance,
        backends: p.backends.map((id): LiveBackend | undefined => {
          const b = deps.registry.get(id);
          if (!b) return undefined;
          const t = deps.tallies(b);
          const prev = previous.get(id);
          previous.set(id, { ...t, at: now });
          const secs = prev ? Math.max(0.001, (now - prev.at) / 1000) : 1;
          const requests = prev ? t.total - prev.total : 0;
          const errors = prev ? t.errors - prev.errors : 0;
          return { ...deps.control.info(b), rps: Math.round((requests / secs) * 10) / 10, errorRate: requests > 0 ? errors / requests : 0 };
        }).filter((x): x is LiveBackend => x !== undefined),
      }));
      res.write(`data: ${JSON.stringify({ time: new Date(now).toISOString(), pools })}\n\n`);
    };
    send();
    const timer = setInterval(send, interval);
    res.on('close', () => clearInterval(timer));
    return true;
  };
}

const STATIC: Record<string, [file: string, type: string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};

/** The dashboard's files, served from the package (no CDN: it works on a network without internet). */
export function dashboardMount(dir: URL = new URL('../../src/admin/dashboard/', import.meta.url)): Mount {
  const cache = new Map<string, Buffer>();
  return async (req, res, path) => {
    const entry = STATIC[path];
    if (!entry || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    let body = cache.get(entry[0]);
    if (!body) {
      body = await readFile(new URL(entry[0], dir));
      cache.set(entry[0], body);
    }
    res.writeHead(200, {
      'content-type': entry[1],
      'content-length': body.length,
      'cache-control': 'no-cache',
      'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
}
