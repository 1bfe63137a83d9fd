import type net from 'node:net';
import type { LlhttpParser } from './llhttp.js';

/** HTTP/1.1 on the wire, shared by lb's client side (server.ts) and backend side (upstream.ts). */
export const CRLF = '\r\n';

/** One piece of a chunked body: size line, data, CRLF, in one corked write. False: wait for 'drain'. */
export function writeChunk(socket: net.Socket, chunk: Buffer): boolean {
  socket.cork();
  socket.write(`${chunk.length.toString(16)}${CRLF}`, 'latin1');
  socket.write(chunk);
  const ok = socket.write(CRLF, 'latin1');
  socket.uncork();
  return ok;
}

/** The end of a chunked body: the zero-size chunk, any trailer fields ([name, value, …]), the blank line. */
export function lastChunk(trailers?: readonly string[] | null): string {
  let tail = `0${CRLF}`;
  if (trailers) for (let i = 0; i < trailers.length; i += 2) tail += `${trailers[i]}: ${trailers[i + 1]}${CRLF}`;
  return tail + CRLF;
}

/** Free a native parser once the execute() that may be on the stack has unwound (as node:http does). */
export function closeLater(parser: LlhttpParser): void {
  setImmediate(() => parser.close());
}
