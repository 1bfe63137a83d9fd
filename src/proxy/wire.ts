import type { LlhttpParser } from './llhttp.js';

/** HTTP/1.1 on the wire, shared by lb's client side (server.ts) and backend side (upstream.ts). */
export const CRLF = '\r\n';

/** A chunked body's size line; the chunk's data and a CRLF follow it. */
export function chunkSize(length: number): string {
  return `${length.toString(16)}${CRLF}`;
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
