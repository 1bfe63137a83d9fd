/**
 * Errors are data: a stable code, one mapping to an HTTP status, the cause preserved.
 * (undici's UND_ERR_* codes are the model.)
 */
export type LbErrorCode =
  | 'LB_NO_BACKEND'
  | 'LB_BACKEND_CONNECT'
  | 'LB_BACKEND_TIMEOUT'
  | 'LB_BACKEND_RESET'
  | 'LB_BACKEND_PROTOCOL'
  /** The client went away mid-exchange: nobody's answer, and never the backend's fault. */
  | 'LB_CLIENT_CLOSED'
  /**
   * The client went quiet mid-exchange: it stopped sending its request body, or stopped reading
   * the response while lb held the backend's bytes for it. Its fault, never the backend's.
   */
  | 'LB_CLIENT_TIMEOUT'
  | 'LB_AFFINITY_STRICT'
  | 'LB_BAD_REQUEST'
  | 'LB_HEADERS_TOO_LARGE'
  | 'LB_CONFIG_INVALID'
  | 'LB_STATE_INVALID';

const STATUS: Record<LbErrorCode, number> = {
  LB_NO_BACKEND: 503,
  LB_AFFINITY_STRICT: 503,
  LB_BACKEND_CONNECT: 502,
  LB_BACKEND_RESET: 502,
  LB_BACKEND_PROTOCOL: 502,
  LB_BACKEND_TIMEOUT: 504,
  LB_CLIENT_CLOSED: 499,
  LB_CLIENT_TIMEOUT: 408,
  LB_BAD_REQUEST: 400,
  LB_HEADERS_TOO_LARGE: 431,
  LB_CONFIG_INVALID: 500,
  LB_STATE_INVALID: 500,
};

export class LbError extends Error {
  readonly code: LbErrorCode;
  readonly status: number;
  constructor(code: LbErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LbError';
    this.code = code;
    this.status = STATUS[code];
  }
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET_CLOSED_BEFORE_CONNECT',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** Classify an error from undici or the socket layer into our codes. */
export function classifyUpstreamError(err: unknown): LbError {
  if (err instanceof LbError) return err;
  const code = (err as { code?: string })?.code ?? '';
  const msg = (err as Error)?.message ?? String(err);
  if (CONNECT_CODES.has(code)) return new LbError('LB_BACKEND_CONNECT', `backend connect failed: ${code}`, { cause: err });
  if (TIMEOUT_CODES.has(code)) return new LbError('LB_BACKEND_TIMEOUT', 'backend timed out', { cause: err });
  if (RESET_CODES.has(code)) return new LbError('LB_BACKEND_RESET', `backend connection reset: ${msg}`, { cause: err });
  return new LbError('LB_BACKEND_PROTOCOL', `backend error: ${code || msg}`, { cause: err });
}
