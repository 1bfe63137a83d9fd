import type { IncomingHttpHeaders } from 'node:http';
import type { ListenerConfig, RouteConfig } from '../config/types.js';

/** A compiled route: predicates built once at load, evaluated per request with no allocation. */
interface Compiled {
  pool: string;
  hosts?: { exact: Set<string>; suffixes: string[] };
  pathPrefix?: string;
  methods?: Set<string>;
  header?: { name: string; value?: string };
  listeners?: Set<string>;
}

export interface RouteFacts {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  listener: string;
}

function compile(r: RouteConfig): Compiled {
  const c: Compiled = { pool: r.pool };
  if (r.match.host?.length) {
    const exact = new Set<string>();
    const suffixes: string[] = [];
    for (const h of r.match.host) {
      const host = h.toLowerCase();
      if (host.startsWith('*.')) suffixes.push(host.slice(1));
      else exact.add(host);
    }
    c.hosts = { exact, suffixes };
  }
  if (r.match.pathPrefix) c.pathPrefix = r.match.pathPrefix;
  if (r.match.methods?.length) c.methods = new Set(r.match.methods.map((m) => m.toUpperCase()));
  if (r.match.header) c.header = { name: r.match.header.name.toLowerCase(), value: r.match.header.value };
  if (r.listeners?.length) c.listeners = new Set(r.listeners);
  return c;
}

/** Host header without port, lower-case (IPv6 literals keep their brackets). */
export function hostOnly(host: string | undefined): string {
  if (!host) return '';
  const h = host.toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

function matches(c: Compiled, f: RouteFacts): boolean {
  if (c.listeners && !c.listeners.has(f.listener)) return false;
  if (c.methods && !c.methods.has(f.method)) return false;
  if (c.pathPrefix && !f.path.startsWith(c.pathPrefix)) return false;
  if (c.hosts) {
    const host = hostOnly(f.headers.host);
    if (!c.hosts.exact.has(host) && !c.hosts.suffixes.some((s) => host.endsWith(s))) return false;
  }
  if (c.header) {
    const v = f.headers[c.header.name];
    if (v === undefined) return false;
    if (c.header.value !== undefined && (Array.isArray(v) ? !v.includes(c.header.value) : v !== c.header.value)) return false;
  }
  return true;
}

/** First match wins, else the listener's pool (SPEC §2). */
export class Router {
  readonly #routes: Compiled[];
  constructor(routes: readonly RouteConfig[]) {
    this.#routes = routes.map(compile);
  }

  poolFor(f: RouteFacts, listener: ListenerConfig): string | undefined {
    for (const r of this.#routes) if (matches(r, f)) return r.pool;
    return listener.pool;
  }
}
