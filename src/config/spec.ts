import { isIP } from 'node:net';
import type { YAMLMap } from 'yaml';
import type {
  AdminConfig, AffinityConfig, BackendConfig, HealthCheckConfig, LbConfig, ListenerConfig, PassiveHealthConfig,
  PoolConfig, RouteConfig, StateConfig, TimeoutsConfig, TlsConfig,
} from './types.js';
import { bool, duration, fail, fields, int, list, named, num, str, type Ctx, type Reader } from './schema.js';

/**
 * The config shape (SPEC §7) with its defaults — config/lb.yaml documents the same keys and
 * defaults. Readers return undefined after recording an issue; `or` fills defaults.
 */
const or = <T>(v: unknown, d: T): T => (v === undefined ? d : (v as T));

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const METHODS = /^[A-Z]{3,10}$/;
const HASH_KEY = /^(source-ip|header:[A-Za-z0-9-]+|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+|query:[^&=\s]+)$/;

function cidr(node: unknown, path: string, ctx: Ctx): string | undefined {
  const s = str({ expected: 'an IP address or CIDR like 10.0.0.0/8' })(node, path, ctx);
  if (s === undefined) return undefined;
  const [addr, bits, extra] = s.split('/');
  const v = isIP(addr);
  const max = v === 6 ? 128 : 32;
  if (v === 0 || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))) {
    return fail(ctx, path, node, `expected an IP address or CIDR like 10.0.0.0/8, got ${JSON.stringify(s)}`);
  }
  return s;
}

const url: Reader<string> = (node, path, ctx) => {
  const s = str({ expected: 'a URL like http://10.0.0.3:8080' })(node, path, ctx);
  if (s === undefined) return undefined;
  try {
    const u = new URL(s);
    if ((u.protocol === 'http:' || u.protocol === 'https:') && u.hostname && (u.pathname === '/' || u.pathname === '') && !u.search) return s;
  } catch {
    /* reported below */
  }
  return fail(ctx, path, node, `expected an http:// or https:// URL with a host and no path, got ${JSON.stringify(s)}`);
};

const statusRange: Reader<{ min: number; max: number }> = (node, path, ctx) => {
  const s = str({ expected: 'a status or range like "200-399"' })(node, path, ctx);
  const m = s === undefined ? null : /^([1-5]\d\d)(?:-([1-5]\d\d))?$/.exec(s);
  if (!m || (m[2] && Number(m[2]) < Number(m[1]))) return s === undefined ? undefined : fail(ctx, path, node, `expected a status or range like "200-399", got ${JSON.stringify(s)}`);
  return { min: Number(m[1]), max: Number(m[2] ?? m[1]) };
};

const tls: Reader<TlsConfig> = (node, path, ctx) => {
  const f = fields(node, path, ctx, { cert: str(), key: str(), pfx: str(), passphrase: str({ allowEmpty: true }), minVersion: str({ oneOf: ['TLSv1.2', 'TLSv1.3'] }), watch: bool });
  if (!f) return undefined;
  const v = f.values;
  if (!v.pfx && !(v.cert && v.key)) fail(ctx, path, node, 'expected cert and key (PEM files) or pfx');
  return { cert: v.cert as string, key: v.key as string, pfx: v.pfx as string, passphrase: v.passphrase as string, minVersion: or(v.minVersion, 'TLSv1.2'), watch: or(v.watch, true) };
};

const listener: Reader<ListenerConfig> = (node, path, ctx) => {
  const f = fields(node, path, ctx, {
    name: str({ pattern: NAME, expected: 'a name of letters, digits, . _ -' }), protocol: str({ oneOf: ['http', 'https'] }), host: str(),
    port: int(0, 65535, 'a port from 0 to 65535'), pool: str(), redirectToHttps: int(1, 65535, 'a port from 1 to 65535'), tls,
  });
  if (!f) return undefined;
  const v = f.values;
  const protocol = or(v.protocol, 'http') as 'http' | 'https';
  if (v.name === undefined && !('name' in f.nodes)) fail(ctx, `${path}.name`, node, 'expected a name, got nothing');
  if (v.port === undefined && !('port' in f.nodes)) fail(ctx, `${path}.port`, node, 'expected a port from 0 to 65535, got nothing');
  if (protocol === 'https' && !('tls' in f.nodes)) fail(ctx, `${path}.tls`, node, 'expected tls (cert and key, or pfx) for protocol https, got nothing');
  if (v.pool === undefined && v.redirectToHttps === undefined && !('pool' in f.nodes)) fail(ctx, `${path}.pool`, node, 'expected a pool (or redirectToHttps), got nothing');
  return { name: v.name as string, protocol, host: or(v.host, '0.0.0.0'), port: v.port as number, pool: v.pool as string, redirectToHttps: v.redirectToHttps as number, tls: v.tls as TlsConfig };
};

const route: Reader<RouteConfig> = (node, path, ctx) => {
  const header: Reader<{ name: string; value?: string }> = (n, p, c) => {
    const h = fields(n, p, c, { name: str({ pattern: /^[A-Za-z0-9-]+$/, expected: 'a header name' }), value: str({ allowEmpty: true }) });
    if (!h) return undefined;
    if (h.values.name === undefined) return fail(c, `${p}.name`, n, 'expected a header name, got nothing');
    return { name: h.values.name as string, value: h.values.value as string | undefined };
  };
  const match: Reader<RouteConfig['match']> = (n, p, c) => {
    const m = fields(n, p, c, { host: list(str(), { scalarOk: true }), pathPrefix: str({ pattern: /^\//, expected: 'a path starting with /' }), methods: list(str({ pattern: METHODS, expected: 'an HTTP method like GET' })), header });
    return m ? (m.values as RouteConfig['match']) : undefined;
  };
  const f = fields(node, path, ctx, { match, pool: str(), listeners: list(str()) });
  if (!f) return undefined;
  if (f.values.pool === undefined && !('pool' in f.nodes)) fail(ctx, `${path}.pool`, node, 'expected a pool, got nothing');
  return { match: or(f.values.match, {}), pool: f.values.pool as string, listeners: f.values.listeners as string[] | undefined };
};

const affinity: Reader<AffinityConfig> = (node, path, ctx) => {
  const cookie: Reader<AffinityConfig['cookie']> = (n, p, c) => {
    const f = fields(n, p, c, { name: str({ pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, expected: 'a cookie name' }), secrets: list(str({ pattern: /^.{8,}$/, expected: 'a secret of at least 8 characters' })), maxIdle: duration, maxLife: duration, domain: str({ pattern: /^\.?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/, expected: 'a domain name like example.com (punycode for IDNs)' }) });
    return f ? (f.values as unknown as AffinityConfig['cookie']) : undefined;
  };
  const hash: Reader<NonNullable<AffinityConfig['hash']>> = (n, p, c) => {
    const f = fields(n, p, c, { key: str({ pattern: HASH_KEY, expected: 'source-ip, header:NAME, cookie:NAME or query:NAME' }), balanceFactor: num((x) => x > 1, 'a number above 1 like 1.25'), memory: int(0, 100_000_000), maxIdle: duration });
    return f ? (f.values as unknown as NonNullable<AffinityConfig['hash']>) : undefined;
  };
  const f = fields(node, path, ctx, { mode: str({ oneOf: ['cookie', 'hash', 'none'] }), cookie, hash, strict: bool });
  if (!f) return undefined;
  const v = f.values;
  const mode = or(v.mode, 'cookie') as AffinityConfig['mode'];
  const ck = or<Partial<AffinityConfig['cookie']>>(v.cookie, {});
  const cookieCfg = { name: or(ck.name, 'lb_affinity'), secrets: or(ck.secrets, []), maxIdle: or(ck.maxIdle, 30 * 60_000), maxLife: or(ck.maxLife, 12 * 3_600_000), domain: ck.domain };
  const h = v.hash as Partial<NonNullable<AffinityConfig['hash']>> | undefined;
  if (mode === 'hash' && !h?.key && !(isHashKeyInvalid(ctx, path))) fail(ctx, `${path}.hash.key`, node, 'expected a hash key (source-ip, header:NAME, cookie:NAME or query:NAME) for mode hash, got nothing');
  const hashCfg = h ? { key: h.key as string, balanceFactor: h.balanceFactor, memory: or(h.memory, 1_000_000), maxIdle: or(h.maxIdle, cookieCfg.maxIdle) } : undefined;
  return { mode, cookie: cookieCfg, hash: hashCfg, strict: or(v.strict, false) };
};

/** A bad hash key was already reported; don't also report it missing. */
function isHashKeyInvalid(ctx: Ctx, path: string): boolean {
  return ctx.issues.some((i) => i.path === `${path}.hash.key`);
}

const healthCheck: Reader<HealthCheckConfig> = (node, path, ctx) => {
  const f = fields(node, path, ctx, {
    enabled: bool, method: str({ pattern: METHODS, expected: 'an HTTP method like GET' }), path: str({ pattern: /^\//, expected: 'a path starting with /' }),
    interval: duration, timeout: duration, rise: int(1, 100), fall: int(1, 100), expectStatus: statusRange, expectBody: str(), host: str(),
    version: str({ pattern: /^(header:[A-Za-z0-9-]+|json:[A-Za-z0-9_.]+)$/, expected: 'header:NAME or json:field.path' }),
  });
  if (!f) return undefined;
  const v = f.values;
  return {
    enabled: or(v.enabled, true), method: or(v.method, 'GET'), path: or(v.path, '/health'), interval: or(v.interval, 5000), timeout: or(v.timeout, 2000),
    rise: or(v.rise, 2), fall: or(v.fall, 3), expectStatus: or(v.expectStatus, { min: 200, max: 399 }), expectBody: v.expectBody as string | undefined,
    host: v.host as string | undefined, version: v.version as string | undefined,
  };
};

const passiveHealth: Reader<PassiveHealthConfig> = (node, path, ctx) => {
  const f = fields(node, path, ctx, { enabled: bool, consecutiveErrors: int(1, 1000), count5xx: bool, cooldown: duration });
  if (!f) return undefined;
  const v = f.values;
  return { enabled: or(v.enabled, true), consecutiveErrors: or(v.consecutiveErrors, 5), count5xx: or(v.count5xx, false), cooldown: or(v.cooldown, 30_000) };
};

const backend: Reader<BackendConfig> = (node, path, ctx) => {
  const f = fields(node, path, ctx, { id: str({ pattern: NAME, expected: 'an id of letters, digits, . _ -' }), url, weight: int(1, 1000) });
  if (!f) return undefined;
  if (!('id' in f.nodes)) fail(ctx, `${path}.id`, node, 'expected an id, got nothing');
  if (!('url' in f.nodes)) fail(ctx, `${path}.url`, node, 'expected a URL like http://10.0.0.3:8080, got nothing');
  return { id: f.values.id as string, url: f.values.url as string, weight: or(f.values.weight, 1) };
};

const DISABLED_HC: HealthCheckConfig = { enabled: false, method: 'GET', path: '/health', interval: 5000, timeout: 2000, rise: 2, fall: 3, expectStatus: { min: 200, max: 399 } };

const pool = (name: string): Reader<PoolConfig> => (node, path, ctx) => {
  if (!NAME.test(name)) fail(ctx, path, node, 'expected a pool name of letters, digits, . _ -');
  const f = fields(node, path, ctx, {
    affinity, balance: str({ oneOf: ['round-robin', 'least-connections', 'p2c'] }), healthCheck, passiveHealth, slowStart: duration,
    requireSameVersion: bool, drainDeadline: duration, backends: list(backend), tlsCa: str(), tlsInsecure: bool,
  });
  if (!f) return undefined;
  const v = f.values;
  return {
    name,
    affinity: or(v.affinity, { mode: 'cookie', cookie: { name: 'lb_affinity', secrets: [], maxIdle: 30 * 60_000, maxLife: 12 * 3_600_000 }, strict: false } as AffinityConfig),
    balance: or(v.balance, 'round-robin'),
    healthCheck: or(v.healthCheck, DISABLED_HC),
    passiveHealth: or(v.passiveHealth, { enabled: true, consecutiveErrors: 5, count5xx: false, cooldown: 30_000 }),
    slowStart: or(v.slowStart, 0),
    requireSameVersion: or(v.requireSameVersion, false),
    drainDeadline: or(v.drainDeadline, 30 * 60_000),
    backends: or(v.backends, []),
    tlsCa: v.tlsCa as string | undefined,
    tlsInsecure: or(v.tlsInsecure, false),
  };
};

const TIMEOUT_DEFAULTS: TimeoutsConfig = { connect: 5000, requestHeaders: 30_000, keepAlive: 60_000, backendResponse: 60_000, websocketIdle: 3_600_000, gracePeriod: 30_000 };

function section<T>(keys: Record<string, Reader<unknown>>, defaults: T): Reader<T> {
  return (node, path, ctx) => {
    const f = fields(node, path, ctx, keys);
    return f ? ({ ...defaults, ...Object.fromEntries(Object.entries(f.values).filter(([, x]) => x !== undefined)) } as T) : undefined;
  };
}

const TOP = {
  workers: ((n, p, c) => (isAuto(n) ? 'auto' : int(1, 256, 'a whole number of workers or "auto"')(n, p, c))) as Reader<number | 'auto'>,
  log: section({ level: str({ oneOf: LEVELS }) }, { level: 'info' }),
  listeners: list(listener),
  routes: list(route),
  pools: named(pool),
  admin: section<AdminConfig>({ enabled: bool, host: str(), port: int(0, 65535, 'a port from 0 to 65535'), token: str({ allowEmpty: true }) }, { enabled: true, host: '127.0.0.1', port: 9090 }),
  state: section<StateConfig>(
    { store: str({ oneOf: ['file', 'redis'] }), file: str(), redis: section({ url: str({ pattern: /^rediss?:\/\//, expected: 'a URL like redis://127.0.0.1:6379' }), prefix: str({ allowEmpty: true }) }, { url: 'redis://127.0.0.1:6379', prefix: 'lb:' }) },
    { store: 'file', file: 'state/lb-state.json', redis: { url: 'redis://127.0.0.1:6379', prefix: 'lb:' } },
  ),
  timeouts: section<TimeoutsConfig>(Object.fromEntries(Object.keys(TIMEOUT_DEFAULTS).map((k) => [k, duration])), TIMEOUT_DEFAULTS),
  retries: section({ tries: int(0, 10), budget: duration, nonIdempotent: bool }, { tries: 2, budget: 10_000, nonIdempotent: false }),
  trustedProxies: list(cidr),
  forwarded: bool,
  websocket: section({ closeRate: num((x) => x > 0, 'closes per second above 0') }, { closeRate: 100 }),
} satisfies Record<string, Reader<unknown>>;

function isAuto(n: unknown): boolean {
  return (n as { value?: unknown })?.value === 'auto';
}

export function readConfig(root: unknown, ctx: Ctx, baseDir: string): LbConfig | undefined {
  const f = fields(root, '', ctx, TOP);
  if (!f) return undefined;
  const v = f.values;
  const config: LbConfig = {
    workers: or(v.workers, 1),
    log: or(v.log, { level: 'info' }),
    listeners: or(v.listeners, []),
    routes: or(v.routes, []),
    pools: or(v.pools, {}),
    admin: or(v.admin, { enabled: true, host: '127.0.0.1', port: 9090 }),
    state: or(v.state, { store: 'file', file: 'state/lb-state.json', redis: { url: 'redis://127.0.0.1:6379', prefix: 'lb:' } }),
    timeouts: or(v.timeouts, TIMEOUT_DEFAULTS),
    retries: or(v.retries, { tries: 2, budget: 10_000, nonIdempotent: false }),
    trustedProxies: or(v.trustedProxies, []),
    forwarded: or(v.forwarded, false),
    websocket: or(v.websocket, { closeRate: 100 }),
    baseDir,
  };
  if (config.admin.token === '') delete config.admin.token;
  crossCheck(config, root as YAMLMap, ctx);
  return config;
}

/** Checks across sections: references exist, names and ids are unique. */
function crossCheck(c: LbConfig, root: YAMLMap, ctx: Ctx): void {
  const at = (...path: Array<string | number>): unknown => root.getIn(path, true);
  const items = (key: string, i: number): unknown => at(key, i);
  const nodes = { listeners: at('listeners'), state: at('state') } as Record<string, unknown>;
  if (!root.has('listeners')) delete nodes.listeners;
  if (!('listeners' in nodes)) fail(ctx, 'listeners', undefined, 'expected at least one listener, got nothing');
  else if (c.listeners.length === 0 && ctx.issues.length === 0) fail(ctx, 'listeners', nodes.listeners, 'expected at least one listener, got an empty list');
  const names = new Set<string>();
  c.listeners.forEach((l, i) => {
    if (l.name && names.has(l.name)) fail(ctx, `listeners[${i}].name`, items('listeners', i), `duplicate listener name "${l.name}"`);
    names.add(l.name);
    if (l.pool && !c.pools[l.pool]) fail(ctx, `listeners[${i}].pool`, items('listeners', i), `expected the name of a pool (${Object.keys(c.pools).join(', ') || 'none defined'}), got "${l.pool}"`);
  });
  c.routes.forEach((r, i) => {
    if (r.pool && !c.pools[r.pool]) fail(ctx, `routes[${i}].pool`, items('routes', i), `expected the name of a pool (${Object.keys(c.pools).join(', ') || 'none defined'}), got "${r.pool}"`);
    for (const l of r.listeners ?? []) if (!names.has(l)) fail(ctx, `routes[${i}].listeners`, items('routes', i), `no listener named "${l}"`);
  });
  const ids = new Map<string, string>();
  for (const p of Object.values(c.pools)) {
    p.backends.forEach((b, i) => {
      const node = at('pools', p.name, 'backends', i);
      if (b.id && ids.has(b.id)) fail(ctx, `pools.${p.name}.backends[${i}].id`, node, `duplicate backend id "${b.id}" (also in pool ${ids.get(b.id)})`);
      ids.set(b.id, p.name);
    });
  }
  if (c.state.store === 'redis' && !c.state.redis.url) fail(ctx, 'state.redis.url', nodes.state, 'expected a redis URL for store redis');
}
