import pino, { type Logger } from 'pino';

/** Values that never reach a log line (SPEC §9). */
export const REDACT = [
  'headers.cookie', 'headers.authorization', 'headers["set-cookie"]', '*.headers.cookie', '*.headers.authorization',
  'token', '*.token', 'secret', '*.secret', 'secrets', '*.secrets', 'cookie', '*.cookie', 'authorization', '*.authorization',
  'cookieSecret', '*.cookieSecret', 'passphrase', '*.passphrase',
];

/**
 * pino with an asynchronous destination (logging off the hot path); `flush()` before exit.
 * `fd` 1 by default; tests pass a stream.
 */
export function createLogger(level: string, dest?: NodeJS.WritableStream): Logger {
  const destination = dest ?? pino.destination({ dest: 1, sync: false });
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
