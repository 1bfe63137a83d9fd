/**
 * The validated, frozen configuration. Produced once by `loadConfig`; never consulted for
 * run-time admin changes (those are state, see balancer/registry.ts). Durations are in ms.
 */

export type Protocol = 'http' | 'https';
export type AffinityMode = 'cookie' | 'hash' | 'none';
export type BalancePolicyName = 'round-robin' | 'least-connections' | 'p2c';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface TlsConfig {
  cert?: string;
  key?: string;
  pfx?: string;
  passphrase?: string;
  minVersion: TlsVersion;
  /** Re-read the files when they change on disk (SIGHUP always re-reads). */
  watch: boolean;
}

export interface ListenerConfig {
  name: string;
  protocol: Protocol;
  host: string;
  port: number;
  pool?: string;
  redirectToHttps?: number;
  tls?: TlsConfig;
}

export interface RouteMatch {
  host?: string[];
  pathPrefix?: string;
  methods?: string[];
  /** header name (lower-case) → exact value, or `true` for presence. */
  header?: { name: string; value?: string };
}

export interface RouteConfig {
  match: RouteMatch;
  pool: string;
  listeners?: string[];
}

export interface CookieAffinityConfig {
  name: string;
  /** The first signs; all verify. Empty: a generated secret kept in the state store. */
  secrets: string[];
  maxIdle: number;
  maxLife: number;
  domain?: string;
}

export interface HashAffinityConfig {
  /** `source-ip` | `header:NAME` | `cookie:NAME` | `query:NAME` */
  key: string;
  balanceFactor?: number;
  /** How many recently seen keys are remembered for draining backends. */
  memory: number;
  maxIdle: number;
}

export interface AffinityConfig {
  mode: AffinityMode;
  cookie: CookieAffinityConfig;
  hash?: HashAffinityConfig;
  strict: boolean;
}

export interface HealthCheckConfig {
  enabled: boolean;
  method: string;
  path: string;
  interval: number;
  timeout: number;
  rise: number;
  fall: number;
  expectStatus: { min: number; max: number };
  expectBody?: string;
  host?: string;
  /** Where the app's version is read from: `header:NAME` or `json:field.path`. */
  version?: string;
}

export interface PassiveHealthConfig {
  enabled: boolean;
  consecutiveErrors: number;
  count5xx: boolean;
  cooldown: number;
}

export interface BackendConfig {
  id: string;
  url: string;
  weight: number;
}

export interface PoolConfig {
  name: string;
  affinity: AffinityConfig;
  balance: BalancePolicyName;
  healthCheck: HealthCheckConfig;
  passiveHealth: PassiveHealthConfig;
  slowStart: number;
  requireSameVersion: boolean;
  drainDeadline: number;
  backends: BackendConfig[];
  /** CA bundle (PEM path) for https:// backends; verification is on unless tlsInsecure. */
  tlsCa?: string;
  tlsInsecure: boolean;
}

export interface TimeoutsConfig {
  connect: number;
  requestHeaders: number;
  keepAlive: number;
  backendResponse: number;
  websocketIdle: number;
  gracePeriod: number;
}

export interface RetryConfig {
  tries: number;
  budget: number;
  /** Also retry non-idempotent requests when nothing of them was sent (connect failed). */
  nonIdempotent: boolean;
}

export interface AdminConfig {
  enabled: boolean;
  host: string;
  port: number;
  token?: string;
}

export interface StateConfig {
  store: 'file' | 'redis';
  file: string;
  redis: { url: string; prefix: string };
}

export interface LbConfig {
  workers: number | 'auto';
  log: { level: string };
  listeners: ListenerConfig[];
  routes: RouteConfig[];
  pools: Record<string, PoolConfig>;
  admin: AdminConfig;
  state: StateConfig;
  timeouts: TimeoutsConfig;
  retries: RetryConfig;
  trustedProxies: string[];
  forwarded: boolean;
  websocket: { closeRate: number };
  /** Directory of the config file: relative paths (TLS files, state file) resolve from here. */
  baseDir: string;
}
