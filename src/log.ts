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
  return pino({ ...lineFormat(level), redact: { paths: REDACT, censor: '[redacted]' } }, destination);
}

/** What every lb log line looks like: pid, ISO time, the level as a word. */
function lineFormat(level: string): pino.LoggerOptions {
  return {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
}

/**
 * The access log: same destination, level and line format as `logger`, without redaction.
 * Access records are lb's own fixed fields (never headers, cookies or tokens; see AccessRecord),
 * and redaction's path walk was a fifth of lb's CPU per request with access logging on.
 */
export function accessLogger(logger: Logger): Logger {
  const stream = (logger as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym];
  return pino(lineFormat(logger.level), stream);
}
