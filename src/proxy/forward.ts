import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { classifyUpstreamError, LbError } from '../util/errors.js';
import { responseHeaders } from './headers.js';

export interface ForwardOptions {
  dispatcher: Dispatcher;
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  headers: string[];
  /** Stream the client's body (false for body-less requests, which are then retryable). */
  hasBody: boolean;
  timeout: number;
  /** Headers to add to the response (Set-Cookie, …), computed when the backend answers. */
  onResponse: (status: number, headers: Record<string, string | string[]>) => void;
}

export type ForwardOutcome =
  | { ok: true; status: number; bytes: number }
  /** Failed before any response byte reached the client; the caller may retry or answer. */
  | { ok: false; error: LbError; responded: false }
  /** Failed after the response started: the client connection was aborted. */
  | { ok: false; error: LbError; responded: true; status: number; bytes: number };

/**
 * One attempt at one backend through undici's dispatch API. Streams both ways with
 * backpressure (pause the backend when the client can't take more), relays 103 Early Hints and
 * trailers, and has exactly one completion path (`finish`).
 */
export function forward(o: ForwardOptions): Promise<ForwardOutcome> {
  return new Promise((resolve) => {
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let bytes = 0;
    let done = false;
    const finish = (outcome: ForwardOutcome): void => {
      if (done) return;
      done = true;
      o.res.off('close', onClientClose);
      resolve(outcome);
    };
    const onClientClose = (): void => {
      if (!o.res.writableFinished) controller?.abort(new Error('client closed'));
    };
    o.res.on('close', onClientClose);

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (o.res.destroyed) c.abort(new Error('client closed'));
      },
      onResponseStart(c, statusCode, headers) {
        if (statusCode < 200) {
          if (statusCode === 103) o.res.writeEarlyHints(responseHeaders(headers) as Record<string, string | string[]>);
          return;
        }
        status = statusCode;
        const out = responseHeaders(headers);
        o.onResponse(statusCode, out);
        try {
          o.res.writeHead(statusCode, out);
        } catch (err) {
          // Headers Node refuses to send (invalid characters): never half-forward them.
          c.abort(new LbError('LB_BACKEND_PROTOCOL', 'backend sent invalid response headers', { cause: err }));
        }
      },
      onResponseData(c, chunk) {
        bytes += chunk.length;
        if (!o.res.write(chunk)) {
          c.pause();
          o.res.once('drain', () => c.resume());
        }
      },
      onResponseEnd(_c, trailers) {
        if (trailers && Object.keys(trailers).length) o.res.addTrailers(trailers as Record<string, string>);
        o.res.end();
        finish({ ok: true, status, bytes });
      },
      onResponseError(_c, err) {
        const error = classifyUpstreamError(err);
        if (!o.res.headersSent) return finish({ ok: false, error, responded: false });
        // Mid-response failure: abort the client connection so a truncated body is never
        // presented as complete.
        o.res.destroy(error);
        finish({ ok: false, error, responded: true, status, bytes });
      },
    };

    o.dispatcher.dispatch(
      {
        origin: undefined,
        method: o.req.method as Dispatcher.HttpMethod,
        path: o.path,
        headers: o.headers,
        body: o.hasBody ? o.req : null,
        headersTimeout: o.timeout,
        bodyTimeout: o.timeout,
        upgrade: null,
      } as Dispatcher.DispatchOptions,
      handler,
    );
  });
}
