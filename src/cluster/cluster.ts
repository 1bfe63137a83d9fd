import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { App } from '../app.js';
import { deepFreeze } from '../config/load.js';
import type { Backend } from '../balancer/types.js';
import type { LbConfig } from '../config/types.js';
import { applyState, stateOf, type BackendReport, type MetricsJson, type ToPrimary, type ToWorker } from './protocol.js';

export function workerCount(config: LbConfig): number {
  return config.workers === 'auto' ? availableParallelism() : config.workers;
}

const REPORT_MS = 250;
const SYNC_TIMEOUT_MS = 3000;
/** After the grace period, how long a stopping worker may take to exit before it is killed. */
const STOP_MARGIN_MS = 2000;
/** A worker that had been ready is replaced after this; one that died before ready, after this × 2^deaths in a row. */
const RESPAWN_MS = 250;
/** Workers dying before ready this many times in a row (after the first start): lb gives up. */
const MAX_EARLY_DEATHS = 5;
/** How long /metrics waits for a worker's answer before it uses the worker's last one. */
const METRICS_TIMEOUT_MS = 1000;
/** Metric types that only count up (kept from a worker that is gone; its gauges go with it). */
const COUNTING = new Set(['counter', 'histogram']);

interface WorkerSlot {
  worker: Worker;
  acked: number;
  ready: boolean;
  /** Why it failed to start, as it said (lb:failed). */
  error?: string;
  report?: Extract<ToPrimary, { t: 'lb:report' }>['backends'];
  /** The worker's last metrics answer. */
  metrics?: MetricsJson;
}

/**
 * The cluster primary: runs the App in the `primary` role (admin API, health checks, drains,
 * state store; no listener), forks the workers, mirrors every Registry change to them, answers
 * admin calls only once every worker applied the change, aggregates what they report (in-flight,
 * WebSockets, sessions, metrics), replaces a worker that dies, and stops them all gracefully.
 */
export async function runPrimary(opts: { config: LbConfig; file: string; logger: Logger; loadConfig: () => LbConfig; onExit: (code: number, err?: Error) => void }): Promise<App> {
  const { logger } = opts;
  const n = workerCount(opts.config);
  const app = await App.start({ config: opts.config, logger, loadConfig: opts.loadConfig, role: 'primary' });
  // What a reload does not apply (it reports it: listeners, and what listeners take at start) is
  // sent as the fleet started: a replacement worker listens and proxies as its siblings do.
  const start = opts.config;
  const forWorkers = (c: LbConfig): LbConfig => ({
    ...c,
    listeners: start.listeners,
    timeouts: start.timeouts,
    retries: start.retries,
    forwarded: start.forwarded,
    trustedProxies: start.trustedProxies,
  });
  const slots = new Map<number, WorkerSlot>();
  let seq = 0;
  let stopping = false;
  let stopGrace = 0;
  /** Every worker was ready once; until then any worker's death fails the start, as with workers: 1. */
  let started = false;
  let earlyDeaths = 0;
  let failure: Error | undefined;
  /**
   * What workers that are gone had counted (counters and histograms, and their request tallies
   * per backend): added in, so totals never go down when a worker is replaced (Prometheus reads
   * a drop as a counter reset).
   */
  let retired: MetricsJson[] = [];
  const retiredTallies = new Map<string, [number, number]>();
  const retire = (slot: WorkerSlot): void => {
    if (slot.metrics) retired.push(slot.metrics.filter((m) => COUNTING.has(String(m.type))));
    for (const [id, r] of Object.entries(slot.report ?? {})) {
      const t = retiredTallies.get(id) ?? [0, 0];
      retiredTallies.set(id, [t[0] + r[2], t[1] + r[3]]);
    }
  };
  let metricsId = 0;
  const metricsWaiters = new Map<number, () => void>();
  const send = (slot: WorkerSlot, msg: ToWorker): void => {
    if (slot.worker.isConnected()) slot.worker.send(msg);
  };
  /** While the primary applies a reload, the syncs it causes wait here (see app.reload below). */
  let held: ToWorker[] | undefined;
  const broadcast = (msg: ToWorker): void => {
    if (held) held.push(msg);
    else for (const s of slots.values()) send(s, msg);
  };

  /** Per backend, the sequence number of its last change: its counts are trusted once every worker acked it. */
  const changedAt = new Map<string, number>();
  /** A draining backend's remembered hash keys, for workers that may not have seen them. */
  const remembered = (b: Backend): ToWorker | undefined => {
    const keys = app.balancer.pool(b.pool)?.affinity.keysOf?.(b.id);
    return keys?.length ? { t: 'lb:remember', pool: b.pool, backend: b.id, keys } : undefined;
  };
  app.registry.on('change', (e) => {
    // Before the drain itself, so no worker places one of these keys elsewhere meanwhile.
    const keys = e.type === 'admin' && e.to === 'draining' ? remembered(e.backend) : undefined;
    if (keys) broadcast(keys);
    seq++;
    if (e.type === 'removed') changedAt.delete(e.backend.id);
    else changedAt.set(e.backend.id, seq);
    broadcast(e.type === 'removed' ? { t: 'lb:sync', seq, remove: e.backend.id } : { t: 'lb:sync', seq, upsert: stateOf(e.backend) });
  });
  app.drains.on('deadline', (b) => broadcast({ t: 'lb:deadline', id: b.id }));
  const waiters = new Set<() => void>();
  const synced = (target: number): boolean => [...slots.values()].every((s) => !s.ready || s.acked >= target);
  app.afterPersist = () => {
    const target = seq;
    if (synced(target)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const check = (): void => {
        if (!synced(target)) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        logger.warn({ event: 'cluster.sync.slow', seq: target }, 'a worker did not confirm an admin change in time');
        resolve();
      }, SYNC_TIMEOUT_MS).unref();
      waiters.add(check);
    });
  };
  // With a Redis fleet too, the fleet's own rule (set when App joined it) must hold as well.
  const fleetTrusts = app.drains.trusts;
  app.drains.trusts = (b) => synced(changedAt.get(b.id) ?? 0) && (fleetTrusts?.(b) ?? true);
  // An empty sync: every worker answers it with a report, then its ack.
  app.freshReports = () => {
    seq++;
    broadcast({ t: 'lb:sync', seq });
    return app.afterPersist!();
  };
  app.readyExtra = () => slots.size === n && [...slots.values()].every((s) => s.ready);
  // Only ready workers are asked (a starting one may never answer), briefly; a worker that does
  // not answer in time counts with its last answer.
  app.metricsText = async () => {
    const asked = [...slots.values()].filter((s) => s.ready && s.worker.isConnected());
    if (asked.length) {
      const id = ++metricsId;
      await new Promise<void>((resolve) => {
        let left = asked.length;
        const done = (): void => {
          clearTimeout(timer);
          metricsWaiters.delete(id);
          resolve();
        };
        const timer = setTimeout(done, METRICS_TIMEOUT_MS).unref();
        metricsWaiters.set(id, () => --left === 0 && done());
        for (const s of asked) send(s, { t: 'lb:metrics', id });
      });
    }
    if (retired.length > 1) retired = [await AggregatorRegistry.aggregate(retired).getMetricsAsJSON()];
    const parts = [...[...slots.values()].flatMap((s) => (s.metrics ? [s.metrics] : [])), ...retired];
    return (await app.metrics.text()) + (parts.length ? await AggregatorRegistry.aggregate(parts).metrics() : '');
  };
  app.tallies = (b) => {
    let [total, errors] = retiredTallies.get(b.id) ?? [0, 0];
    for (const s of slots.values()) {
      const r = s.report?.[b.id];
      if (r) [total, errors] = [total + r[2], errors + r[3]];
    }
    return { total, errors };
  };
  // The certificate lives in the workers' listeners.
  app.reloadTls = () => broadcast({ t: 'lb:tls' });
  const origReload = app.reload.bind(app);
  // A reload can add the pools its registry changes refer to: workers get the reload (with the
  // config the primary applied) first, in sequence, then those changes.
  app.reload = (next) => {
    const reloadSeq = ++seq;
    held = [];
    let warnings: string[] | undefined;
    try {
      warnings = origReload(next);
    } finally {
      const syncs = held;
      held = undefined;
      if (warnings) broadcast({ t: 'lb:reload', seq: reloadSeq, state: app.state, config: forWorkers(next) });
      for (const m of syncs) broadcast(m);
    }
    return warnings;
  };

  const onMessage = (slot: WorkerSlot, msg: ToPrimary): void => {
    switch (msg.t) {
      case 'lb:hello':
        // The worker listens now (a message sent at 'online' would arrive before its listener):
        // a broadcast lb:stop it missed while it loaded is sent again here instead of its state.
        if (stopping) send(slot, { t: 'lb:stop', grace: stopGrace });
        else {
          send(slot, { t: 'lb:init', seq, state: app.state, backends: app.registry.all().map(stateOf), config: forWorkers(app.config), file: opts.file });
          for (const b of app.registry.all()) {
            const keys = b.adminState === 'draining' ? remembered(b) : undefined;
            if (keys) send(slot, keys);
          }
        }
        break;
      case 'lb:ready':
        slot.ready = true;
        earlyDeaths = 0;
        started ||= slots.size === n && [...slots.values()].every((s) => s.ready);
        logger.info({ event: 'cluster.worker.ready', worker: slot.worker.id, workerPid: slot.worker.process.pid }, `worker ${slot.worker.id} ready`);
        break;
      case 'lb:failed':
        slot.error = msg.error;
        break;
      case 'lb:metrics':
        slot.metrics = msg.metrics;
        metricsWaiters.get(msg.id)?.();
        break;
      case 'lb:ack':
        slot.acked = Math.max(slot.acked, msg.seq);
        for (const w of [...waiters]) w();
        break;
      case 'lb:report': {
        slot.report = msg.backends;
        for (const b of app.registry.all()) {
          let inFlight = 0;
          let websockets = 0;
          for (const s of slots.values()) {
            const r = s.report?.[b.id];
            if (r) [inFlight, websockets] = [inFlight + r[0], websockets + r[1]];
          }
          b.inFlight = inFlight;
          b.websockets = websockets;
        }
        const relay = new Map<string, Extract<ToWorker, { t: 'lb:remember' }>>();
        for (const [pool, id, backend, expiresAt] of msg.touches) {
          const affinity = app.balancer.pool(pool)?.affinity;
          affinity?.remember?.(id, backend, expiresAt);
          app.recordTouch(pool, id, backend, expiresAt);
          // A hash key seen on a draining backend stays there on the other workers too.
          if (affinity?.keysOf && app.registry.get(backend)?.adminState === 'draining') {
            const r = relay.get(backend) ?? { t: 'lb:remember', pool, backend, keys: [] };
            r.keys.push(id);
            relay.set(backend, r);
          }
        }
        for (const r of relay.values()) for (const s of slots.values()) if (s !== slot) send(s, r);
        for (const id of msg.ejects) {
          const b = app.registry.get(id);
          if (b) app.passive.ejectNow(b);
        }
        break;
      }
    }
  };

  const fork = (): void => {
    const worker = cluster.fork();
    const slot: WorkerSlot = { worker, acked: 0, ready: false };
    slots.set(worker.id, slot);
    worker.on('message', (msg: ToPrimary) => {
      if (msg && typeof msg === 'object' && typeof msg.t === 'string' && msg.t.startsWith('lb:')) onMessage(slot, msg);
    });
    // A send to a worker that died before the primary read its EOF passes isConnected() and fails
    // (EPIPE) as an 'error' event on the Worker: unhandled, it would end the primary. Its 'exit' follows.
    worker.on('error', (err: Error) => logger.warn({ event: 'cluster.worker.ipc', worker: worker.id, error: err.message }, `worker ${worker.id}: ${err.message}`));
  };
  cluster.on('exit', (worker, code, signal) => {
    const slot = slots.get(worker.id);
    if (slot) retire(slot);
    slots.delete(worker.id);
    for (const w of [...waiters]) w();
    if (stopping) {
      if (slots.size === 0) void app.stop(0).then(() => opts.onExit(failure ? 1 : 0, failure));
      return;
    }
    const why = slot?.error ?? `exit ${signal ?? code}`;
    if (!slot?.ready && (!started || ++earlyDeaths >= MAX_EARLY_DEATHS)) {
      // Not a crash to ride out (a port in use, a missing certificate…): fail as workers: 1 does.
      failure = new Error(slot?.error ?? `worker ${worker.id} failed to start (${why})`);
      logger.error({ event: 'cluster.start.failed', worker: worker.id, code, signal, error: why }, `worker ${worker.id} failed to start (${why}); stopping`);
      void app.stop(0).then(() => opts.onExit(1, failure));
      return;
    }
    const delay = slot?.ready ? RESPAWN_MS : RESPAWN_MS * 2 ** earlyDeaths;
    logger.error({ event: 'cluster.worker.died', worker: worker.id, code, signal, error: slot?.error }, `worker ${worker.id} died (${why}); starting another in ${delay} ms`);
    setTimeout(() => {
      if (!stopping) fork();
    }, delay);
  });
  for (let i = 0; i < n; i++) fork();
  logger.info({ event: 'cluster.start', workers: n }, `lb primary: ${n} workers`);

  const origStop = app.stop.bind(app);
  app.stop = (grace = app.config.timeouts.gracePeriod) => {
    if (!stopping) {
      stopping = true;
      stopGrace = grace;
      if (slots.size === 0) return origStop(0);
      broadcast({ t: 'lb:stop', grace });
      // A worker that has not exited by then is killed, so the primary always exits.
      setTimeout(() => {
        for (const s of slots.values()) {
          logger.warn({ event: 'cluster.worker.killed', worker: s.worker.id }, `worker ${s.worker.id} did not stop in time; killing it`);
          s.worker.process.kill('SIGKILL');
        }
      }, grace + STOP_MARGIN_MS).unref();
    }
    return new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (slots.size === 0) {
          clearInterval(check);
          void origStop(0).then(resolve);
        }
      }, 50);
    });
  };
  return app;
}

/**
 * A cluster worker: waits for the primary's config and state, runs the App in the `worker` role (listeners
 * only), applies every change the primary sends (acknowledging each), and reports in-flight,
 * WebSockets, request tallies, session touches and passive-health ejections every 250 ms.
 */
export async function runWorker(opts: { logger: (config: LbConfig) => Logger; onExit: (code: number) => void }): Promise<void> {
  // Queue what the primary sends while this worker starts; nothing may be dropped.
  const queued: ToWorker[] = [];
  let handle: ((msg: ToWorker) => void) | undefined;
  process.on('message', (msg: ToWorker) => {
    if (!msg || typeof msg !== 'object' || typeof msg.t !== 'string' || !msg.t.startsWith('lb:') || msg.t === 'lb:init') return;
    if (handle) handle(msg);
    else queued.push(msg);
  });
  /**
   * Session touches since the last report, one per session (the latest wins, as the primary's
   * table would end up anyway: a session's expiry only grows, and its last backend is where it
   * is): a returning client touches on every request, the report carries it once.
   */
  const touches = new Map<string, [string, string, string, number]>();
  const touch = (pool: string, id: string, backend: string, expiresAt: number): void => void touches.set(`${pool}\0${id}`, [pool, id, backend, expiresAt]);
  const ejects = new Set<string>();
  const toPrimary = (msg: ToPrimary): void => {
    if (process.connected) process.send!(msg);
  };
  // The primary answers lb:hello with lb:init, or with lb:stop when it is stopping already.
  const init = await new Promise<Extract<ToWorker, { t: 'lb:init' | 'lb:stop' }>>((resolve) => {
    const on = (msg: ToWorker): void => {
      if (msg?.t !== 'lb:init' && msg?.t !== 'lb:stop') return;
      process.off('message', on);
      resolve(msg);
    };
    process.on('message', on);
    toPrimary({ t: 'lb:hello' });
  });
  if (init.t === 'lb:stop') return opts.onExit(0);
  const logger = opts.logger(init.config);
  const app = await App.start({
    // A JSON copy of the primary's frozen config: frozen again, as the file loader leaves it.
    config: deepFreeze(init.config),
    logger,
    role: 'worker',
    state: init.state,
    onTouch: touch,
    onEject: (b) => ejects.add(b.id),
  });
  const known = new Set(init.backends.map((b) => b.id));
  for (const b of app.registry.all()) if (!known.has(b.id)) app.registry.remove(b.id);
  for (const s of init.backends) applyState(app.registry, s);
  toPrimary({ t: 'lb:ack', seq: init.seq });
  let applied = init.seq;

  /**
   * Acknowledge a change with a report first (IPC keeps the order): once every worker acked a
   * change, the primary's in-flight, WebSocket and session numbers are at least as fresh as it,
   * which is what a drain's "drained" and a DELETE's "not busy" must be decided on.
   */
  const ack = (seq: number): void => {
    sendReport();
    toPrimary({ t: 'lb:ack', seq });
  };
  let diverged = false;
  const apply = (msg: ToWorker): void => {
    switch (msg.t) {
      case 'lb:sync':
        // A change sent before the init snapshot is already in it: never roll back to it.
        if (msg.seq > applied) {
          if (msg.remove) app.registry.remove(msg.remove);
          if (msg.upsert) applyState(app.registry, msg.upsert);
          applied = msg.seq;
        }
        ack(msg.seq);
        break;
      case 'lb:remember': {
        const affinity = app.balancer.pool(msg.pool)?.affinity;
        for (const k of msg.keys) affinity?.remember?.(k, msg.backend, 0);
        break;
      }
      case 'lb:deadline': {
        const b = app.registry.get(msg.id);
        if (!b) break;
        app.balancer.pool(b.pool)?.affinity.forgetBackend(b.id);
        app.drains.emit('deadline', b);
        break;
      }
      case 'lb:reload':
        // The primary validated and applied this config; a snapshot newer than it is already in force.
        if (msg.seq > applied) {
          app.state = msg.state;
          app.reload(deepFreeze(msg.config));
          applied = msg.seq;
        }
        ack(msg.seq);
        break;
      case 'lb:tls':
        app.reloadTls();
        break;
      case 'lb:metrics':
        // A collection that fails leaves the primary to its timeout (and this worker's last answer).
        void app.metrics.registry.getMetricsAsJSON().then((metrics) => toPrimary({ t: 'lb:metrics', id: msg.id, metrics }), () => undefined);
        break;
      case 'lb:stop':
        void app.stop(msg.grace).then(() => opts.onExit(0));
        break;
    }
  };
  // A change this worker cannot apply leaves it diverged from the primary: rather than serve with
  // other state than the fleet (or die on an exception in the IPC handler), it stops accepting,
  // finishes what it has for a moment, and exits; the primary starts a fresh one from its state.
  handle = (msg: ToWorker) => {
    if (diverged) return;
    try {
      apply(msg);
    } catch (err) {
      diverged = true;
      logger.error({ event: 'cluster.worker.diverged', message: msg.t, error: (err as Error).message }, `worker could not apply ${msg.t} from the primary (${(err as Error).message}); exiting to be replaced`);
      void app.stop(Math.min(1000, app.config.timeouts.gracePeriod)).finally(() => opts.onExit(1));
    }
  };
  function sendReport(): void {
    const backends: Record<string, BackendReport> = {};
    for (const b of app.registry.all()) {
      const t = app.metrics.tallies(b);
      backends[b.id] = [b.inFlight, b.websockets, t.total, t.errors];
    }
    // Sessions held by open WebSockets here stay live fleet-wide while they are held.
    for (const p of app.balancer.pools()) {
      const maxIdle = p.config.affinity.mode === 'hash' ? p.config.affinity.hash!.maxIdle : p.config.affinity.cookie.maxIdle;
      for (const [id, backend] of p.affinity.held?.() ?? []) touch(p.name, id, backend, Date.now() + maxIdle);
    }
    toPrimary({ t: 'lb:report', backends, touches: [...touches.values()], ejects: [...ejects] });
    touches.clear();
    ejects.clear();
  }
  const report = setInterval(sendReport, REPORT_MS);
  report.unref();
  for (const msg of queued.splice(0)) handle(msg);
  toPrimary({ t: 'lb:ready' });
}
