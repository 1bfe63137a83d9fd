import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { LbError } from '../util/errors.js';
import { ApiError } from '../admin/errors.js';
import { validateState } from './file-store.js';
import type { PersistedState, StateStore } from './types.js';

/**
 * `state.store: redis` (SPEC §8): the admin overlay and the cookie secret live in one Redis key,
 * written with a version check (a Lua script: a write whose version is not newer than the stored
 * one is refused, so a late or duplicate write never rolls state back) and announced on a
 * pub/sub channel, so every lb instance applies a change within a second. While Redis is down,
 * instances keep serving with the last state they have; admin changes are refused with 503 (not
 * queued: an operator must know a drain did not reach the fleet), and state is re-read when
 * Redis comes back.
 *
 * Live sessions are shared too: each instance adds the sessions it serves to a sorted set per
 * backend (score = expiry) and reads the fleet's counts back, so drain progress on any instance
 * counts users served by every instance; hash keys travel the same way, so a key seen by one
 * instance keeps its draining backend on all of them.
 */
const SAVE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and tonumber(doc.version) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1`;

export class RedisStateStore implements StateStore {
  readonly #redis: Redis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #url: string;
  readonly #logger?: Logger;
  #up = false;
  #onChange?: (doc: PersistedState) => void;
  #onReconnect?: () => void;

  constructor(opts: { url: string; prefix: string; logger?: Logger }) {
    this.#prefix = opts.prefix;
    this.#url = opts.url;
    this.#logger = opts.logger;
    const common = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // Reconnect forever with backoff (100 ms … 2 s); serving never depends on it.
      retryStrategy: (times: number) => Math.min(2000, 100 * 2 ** Math.min(times, 5)),
    };
    // A Redis that stops answering (frozen, partitioned without a reset) must not hang admin
    // changes: give up after 2 s and report the store unavailable.
    this.#redis = new Redis(opts.url, { ...common, commandTimeout: 2000 });
    this.#sub = new Redis(opts.url, { ...common, enableOfflineQueue: true, maxRetriesPerRequest: null });
    for (const r of [this.#redis, this.#sub]) r.on('error', () => undefined);
    this.#redis.on('ready', () => {
      const was = this.#up;
      this.#up = true;
      if (!was) this.#logger?.info({ event: 'state.redis.up', url: this.#url }, 'state store reachable');
      this.#onReconnect?.();
    });
    // The subscriber reconnected on its own: messages published meanwhile were lost; catch up.
    this.#sub.on('ready', () => {
      if (this.#lastPulled >= 0) void this.refresh();
    });
    this.#redis.on('close', () => {
      if (this.#up) this.#logger?.warn({ event: 'state.redis.down', url: this.#url }, 'state store unreachable: serving with the last known state; admin changes are refused until it is back');
      this.#up = false;
    });
  }

  get key(): string {
    return `${this.#prefix}state`;
  }

  get channel(): string {
    return `${this.#prefix}changes`;
  }

  /** Can an admin change be stored now? */
  writable(): boolean {
    return this.#up;
  }

  async load(): Promise<PersistedState | undefined> {
    try {
      await Promise.race([
        this.#redis.connect(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timed out after 3 s')), 3000).unref()),
      ]);
      await this.#sub.connect();
    } catch (err) {
      this.#redis.disconnect();
      this.#sub.disconnect();
      throw new LbError('LB_STATE_INVALID', `state store ${this.#url} is unreachable at start: ${(err as Error).message}`, { cause: err });
    }
    this.#up = true;
    await this.#sub.subscribe(this.channel);
    this.#sub.on('message', (_channel, version) => void this.#pull(Number(version)));
    const doc = await this.#read();
    this.#lastPulled = doc?.version ?? 0;
    return doc;
  }

  async save(state: PersistedState): Promise<void> {
    if (!this.#up) throw new ApiError('LB_UNAVAILABLE', `state store ${this.#url} is unreachable: change refused`);
    let ok: number;
    try {
      ok = (await this.#redis.eval(SAVE, 2, this.key, this.channel, JSON.stringify(state), String(state.version))) as number;
    } catch (err) {
      throw new ApiError('LB_UNAVAILABLE', `state store ${this.#url} did not take the change: ${(err as Error).message}`);
    }
    if (ok !== 1) {
      // This instance is behind (a lost message, a racing write): catch up before the caller retries.
      await this.refresh();
      throw new ApiError('LB_CONFLICT', 'another lb instance changed the state first; retry');
    }
    this.#lastPulled = Math.max(this.#lastPulled, state.version);
  }

  /** Re-read the shared document and apply it if it is newer than what this instance has. */
  refresh(): Promise<void> {
    return this.#pull(Number.MAX_SAFE_INTEGER);
  }

  /** Called with every newer document another instance stored (and after reconnecting). */
  subscribe(onChange: (doc: PersistedState) => void, onReconnect: (remote: PersistedState | undefined) => void): void {
    this.#onChange = onChange;
    // Back after an outage: catch up on what changed, and let the instance re-seed a Redis that
    // lost its data (restarted without persistence) from the state it kept serving with.
    this.#onReconnect = () =>
      void this.#read().then(
        (doc) => {
          if (doc && doc.version > this.#lastPulled) {
            this.#lastPulled = doc.version;
            this.#onChange?.(doc);
          }
          onReconnect(doc);
        },
        () => undefined,
      );
    // Whatever was published between load() and now.
    void this.refresh();
  }

  // ---- shared session counts --------------------------------------------------------------

  /** Touches since the last exchange, one per session (the latest wins). */
  #pending = new Map<string, [string, string, string, number]>();

  /** Queue a session (or hash key) touch; flushed in batches. */
  touch(pool: string, id: string, backend: string, expiresAt: number): void {
    this.#pending.set(`${pool}\0${id}`, [pool, id, backend, expiresAt]);
  }

  #sessionsKey(pool: string, backend: string): string {
    return `${this.#prefix}sessions:${pool}:${backend}`;
  }

  /** Each instance's in-flight requests and WebSockets on a backend, with their validity. */
  #connsKey(pool: string, backend: string): string {
    return `${this.#prefix}conns:${pool}:${backend}`;
  }

  /** This instance, in the per-backend connection tallies the fleet shares. */
  readonly #instance = randomUUID();

  /**
   * Write queued touches and this instance's in-flight requests and open WebSockets per backend;
   * read back the fleet's live session count and the other instances' connections per backend.
   */
  async exchange(backends: Array<{ pool: string; id: string; inFlight: number; websockets: number; clear?: boolean }>, now: number): Promise<Map<string, { sessions: number; inFlight: number; websockets: number }> | undefined> {
    if (!this.#up) return undefined;
    const batch = [...this.#pending.values()];
    this.#pending.clear();
    const p = this.#redis.pipeline();
    for (const [pool, id, backend, expiresAt] of batch) p.zadd(this.#sessionsKey(pool, backend), 'GT', Number.isFinite(expiresAt) ? expiresAt : now + 86_400_000, id);
    for (const b of backends) {
      const conns = this.#connsKey(b.pool, b.id);
      // `clear`: the backend holds no sessions any more (maint, drained…): its set is emptied.
      if (b.clear) p.del(this.#sessionsKey(b.pool, b.id));
      else p.zremrangebyscore(this.#sessionsKey(b.pool, b.id), '-inf', now);
      p.zcard(this.#sessionsKey(b.pool, b.id));
      p.hset(conns, this.#instance, `${b.inFlight},${b.websockets},${now + 3000}`);
      p.pexpire(conns, 60_000);
      p.hgetall(conns);
    }
    // Per backend, PER_BACKEND replies in the order queued above: [del|zremrangebyscore, zcard, hset, pexpire, hgetall].
    const PER_BACKEND = 5;
    const ZCARD = 1;
    const HGETALL = 4;
    try {
      const res = await p.exec();
      const counts = new Map<string, { sessions: number; inFlight: number; websockets: number }>();
      backends.forEach((b, i) => {
        const at = batch.length + i * PER_BACKEND;
        const c = { sessions: Number(res?.[at + ZCARD]?.[1] ?? 0), inFlight: 0, websockets: 0 };
        for (const [inst, v] of Object.entries((res?.[at + HGETALL]?.[1] ?? {}) as Record<string, string>)) {
          const [f, w, until] = v.split(',').map(Number);
          if (inst === this.#instance || !(until > now)) continue;
          c.inFlight += f || 0;
          c.websockets += w || 0;
        }
        counts.set(b.id, c);
      });
      return counts;
    } catch {
      for (const t of batch) if (!this.#pending.has(`${t[0]}\0${t[1]}`)) this.#pending.set(`${t[0]}\0${t[1]}`, t);
      return undefined;
    }
  }

  /** A backend removed from the fleet: its sessions and connection tallies go (and its queued touches). */
  forget(pool: string, backend: string): void {
    for (const [k, t] of this.#pending) if (t[0] === pool && t[2] === backend) this.#pending.delete(k);
    if (this.#up) void this.#redis.del(this.#sessionsKey(pool, backend), this.#connsKey(pool, backend)).catch(() => undefined);
  }

  /** Every live session (or hash key) the fleet has on one backend: [id, expiresAt]. */
  async members(pool: string, backend: string, now: number): Promise<Array<[string, number]>> {
    if (!this.#up) return [];
    const flat = await this.#redis.zrangebyscore(this.#sessionsKey(pool, backend), now, '+inf', 'WITHSCORES').catch(() => [] as string[]);
    const out: Array<[string, number]> = [];
    for (let i = 0; i < flat.length; i += 2) out.push([flat[i], Number(flat[i + 1])]);
    return out;
  }

  async close(): Promise<void> {
    this.#onChange = undefined;
    this.#onReconnect = undefined;
    this.#redis.disconnect();
    this.#sub.disconnect();
  }

  #lastPulled = -1;

  async #pull(version: number): Promise<void> {
    // Before subscribe(): nobody would apply it, so it must not count as pulled.
    if (!this.#onChange || version <= this.#lastPulled) return;
    try {
      const doc = await this.#read();
      if (doc && doc.version > this.#lastPulled) {
        this.#lastPulled = doc.version;
        this.#onChange?.(doc);
      }
    } catch (err) {
      this.#logger?.warn({ event: 'state.redis.read.failed', error: (err as Error).message }, 'could not read the shared state');
    }
  }

  async #read(): Promise<PersistedState | undefined> {
    const text = await this.#redis.get(this.key);
    if (text === null) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new LbError('LB_STATE_INVALID', `state in ${this.#url} key ${this.key} is corrupt (not JSON); fix or delete it`, { cause: err });
    }
    return validateState(parsed, `${this.#url} ${this.key}`);
  }
}
