import type { ProxyRequest, ProxyResponse } from './server.js';
import { classifyUpstreamError, LbError } from '../util/errors.js';
import { responseHeaders } from './headers.js';
import type { Exchange, UpstreamPool } from './upstream.js';

export interface ForwardOptions {
  upstream: UpstreamPool;
  req: ProxyRequest;
  res: ProxyResponse;
  path: string;
  headers: string[];
  timeout: number;
  /** Headers to add to the response (Set-Cookie, …) as [name, value, …], computed when the backend answers. */
  onResponse: (status: number, headers: string[]) => void;
}

export type ForwardOutcome =
  | { ok: true; status: number; bytes: number }
  /** Failed before any response byte reached the client; the caller may retry or answer. */
  | { ok: false; error: LbError; responded: false }
  /** Failed after the response started: the client connection was aborted. */
  | { ok: false; error: LbError; responded: true; status: number; bytes: number };

/**
 * One attempt at one backend. Streams both ways with backpressure (pause the backend when the
 * client can't take more), relays 103 Early Hints and trailers, and has exactly one completion
 * path (`finish`).
 */
export function forward(o: ForwardOptions, settle: (outcome: ForwardOutcome) => void): void {
  let status = 0;
  let bytes = 0;
  let done = false;
  let exchange: Exchange | undefined;
  const finish = (outcome: ForwardOutcome): void => {
    if (done) return;
    done = true;
    o.res.off('close', onClientClose);
    settle(outcome);
  };
  const onClientClose = (): void => {
    if (!o.res.writableFinished) exchange?.abort(new LbError('LB_CLIENT_CLOSED', 'client closed'));
  };
  let waiting = false;
  const resume = (): void => {
    waiting = false;
    exchange?.resume();
  };
  o.res.on('close', onClientClose);

  exchange = o.upstream.request(
    {
      method: o.req.method,
      path: o.path,
      headers: o.headers,
      // The client's body, streamed; a chunked one is re-chunked, otherwise its Content-Length is in `headers`.
      body: o.req.body,
      chunked: o.req.chunked,
      headersTimeout: o.timeout,
      bodyTimeout: o.timeout,
    },
    {
      onInformational(code, headers) {
        // 100 Continue is lb's own to send (it answers Expect itself); any other 1xx passes.
        if (code !== 100) o.res.writeInformational(code, responseHeaders(headers));
      },
      onHead(code, headers) {
        status = code;
        try {
          const out = responseHeaders(headers);
          o.onResponse(code, out);
          // The backend's fields passed llhttp's strict parse; lb's own (Set-Cookie from a
          // validated cookie name and domain, Cache-Control) are valid by construction.
          o.res.writeHead(code, out, true);
          o.res.flushHead();
        } catch (err) {
          // Never expected; but this runs inside the backend socket's parser callback, where a
          // throw would take the process down: the exchange fails instead (502), nothing half-sent.
          exchange?.abort(new LbError('LB_BACKEND_PROTOCOL', 'the response head could not be relayed', { cause: err }));
        }
      },
      onData(chunk) {
        bytes += chunk.length;
        if (o.res.write(chunk)) return true;
        // One read can hold several body pieces: wait for one 'drain', not one per piece.
        if (!waiting) {
          waiting = true;
          o.res.once('drain', resume);
        }
        return false;
      },
      onEnd(trailers) {
        if (trailers.length) o.res.addTrailers(trailers);
        o.res.end();
        finish({ ok: true, status, bytes });
      },
      onError(err) {
        const error = classifyUpstreamError(err);
        if (!o.res.headersSent) return finish({ ok: false, error, responded: false });
        // Mid-response failure: abort the client connection so a truncated body is never
        // presented as complete.
        o.res.destroy(error);
        finish({ ok: false, error, responded: true, status, bytes });
      },
    },
  );
  if (o.res.destroyed) onClientClose();
}
