/** Admin API errors: a stable code and its HTTP status; rendered as {"error":{code,message}}. */
const STATUS = {
  LB_UNAUTHORIZED: 401,
  LB_NOT_FOUND: 404,
  LB_METHOD_NOT_ALLOWED: 405,
  LB_CONFLICT: 409,
  LB_BACKEND_BUSY: 409,
  LB_BAD_REQUEST: 400,
  LB_BAD_JSON: 400,
  LB_UNSUPPORTED_MEDIA: 415,
  LB_TOO_LARGE: 413,
  LB_BACKEND_UNHEALTHY: 422,
  LB_CONFIG_INVALID: 422,
  LB_STATE_INVALID: 422,
  LB_UNAVAILABLE: 503,
} as const;

export type ApiErrorCode = keyof typeof STATUS;

export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly status: number;
  constructor(code: ApiErrorCode, message: string) {
    super(message);
    this.code = code;
    this.status = STATUS[code];
  }
}
