import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { App } from '../app.js';
import { runPrimary, runWorker, workerCount } from '../cluster/cluster.js';
import type { ToPrimary } from '../cluster/protocol.js';
import { loadConfigFile } from '../config/load.js';
import type { LbConfig } from '../config/types.js';
import { createLogger } from '../log.js';
import { startDemoServer, type DemoServer } from '../demo/app-server.js';

/** The package root (…/dist/cli → …), where config/ ships. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Run lb in the foreground until SIGTERM/SIGINT (graceful stop, exit 0). SIGHUP re-reads the
 * config file (a valid one is applied live, an invalid one is logged and changes nothing) and the
 * certificate, in both cases.
 */
export async function serve(configFile: string, extra: { onStop?: () => Promise<void>; config?: LbConfig } = {}): Promise<number> {
  const config = extra.config ?? loadConfigFile(configFile);
  const logger = createLogger(config.log.level);
  const loadConfig = (): LbConfig => loadConfigFile(configFile);
  const workers = workerCount(config);
  let app: App;
  // The cluster primary fails when its workers cannot start (a port in use…): as workers: 1 does.
  let fail: (err: Error) => void = () => undefined;
  try {
    app =
      workers > 1
        ? await runPrimary({ config, file: configFile, logger, loadConfig, onExit: (code, err) => code !== 0 && fail(err ?? new Error(`exit ${code}`)) })
        : await App.start({ config, logger, loadConfig });
  } catch (err) {
    logger.flush();
    throw err;
  }
  return new Promise<number>((resolveExit, rejectExit) => {
    fail = (err) => {
      logger.flush();
      rejectExit(err);
    };
    const stop = (signal: string): void => {
      logger.info({ event: 'signal', signal }, `${signal}: graceful stop`);
      void app
        .stop()
        .then(() => extra.onStop?.())
        .then(() => {
          logger.flush();
          resolveExit(0);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      try {
        app.reload(loadConfig());
      } catch (err) {
        logger.error({ event: 'config.reload.rejected', error: (err as Error).message }, 'reload rejected; the running config is unchanged');
        // SIGHUP also means "re-read the certificate": do that even when the new config is bad.
        app.reloadTls();
      }
    });
  });
}

/**
 * A cluster worker process (whatever command the primary runs: `start` or `demo`). It reads no
 * config file: the primary sends the config it runs. It stops when the primary says so (the
 * primary relays SIGTERM/SIGINT), or when the primary is gone; a failure to start ends it.
 */
export function serveWorker(): Promise<number> {
  let logger: Logger | undefined;
  return new Promise<number>((resolveExit) => {
    const exit = (code: number): void => {
      logger?.flush();
      resolveExit(code);
      process.exitCode ??= code;
      // The IPC channel keeps a worker alive: let go of it so the process ends. (Through the
      // cluster worker: a bare process.disconnect() makes node exit at once with code 0.)
      if (process.connected) cluster.worker!.disconnect();
      setTimeout(() => process.exit(code), 2000).unref();
    };
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => undefined);
    process.on('disconnect', () => exit(1));
    runWorker({ logger: (config) => (logger = createLogger(config.log.level)), onExit: exit }).catch((err: Error) => {
      (logger ?? createLogger('info')).error({ event: 'cluster.worker.failed', error: err.message }, `worker failed to start: ${err.message}`);
      // Tell the primary why before going (it fails its own start with this error).
      if (process.connected) process.send!({ t: 'lb:failed', error: err.message } satisfies ToPrimary, undefined, {}, () => exit(1));
      else exit(1);
    });
  });
}

/** `lb demo`: three demo app servers (ports from config/demo.yaml) and lb in front of them. */
export async function demo(configFile = resolve(PACKAGE_ROOT, 'config', 'demo.yaml')): Promise<number> {
  const config = loadConfigFile(configFile);
  const servers: DemoServer[] = [];
  for (const pool of Object.values(config.pools)) {
    for (const b of pool.backends) {
      const url = new URL(b.url);
      servers.push(await startDemoServer(b.id, Number(url.port), url.hostname));
    }
  }
  const web = config.listeners[0];
  const base = `http://${web.host === '0.0.0.0' ? '127.0.0.1' : web.host}:${web.port}`;
  process.stdout.write(
    [
      `lb demo: ${servers.map((s) => `${s.id} on 127.0.0.1:${s.port}`).join(', ')}; lb on ${base}`,
      'Try:',
      `  curl -c /tmp/jar -b /tmp/jar ${base}/     # repeat: same server, the visit count grows`,
      `  curl ${base}/                             # no cookie jar: a new session each time, spread over the servers`,
      config.admin.enabled ? `  curl http://${config.admin.host}:${config.admin.port}/api/v1/backends` : '',
      config.admin.enabled ? `  npx lb drain node-3 --wait               # drain without logging anyone out` : '',
      'Ctrl-C stops everything.',
      '',
    ]
      .filter((l) => l !== '')
      .join('\n') + '\n',
  );
  return serve(configFile, { config, onStop: async () => void (await Promise.all(servers.map((s) => s.close()))) });
}
