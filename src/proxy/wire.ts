import type { LlhttpParser } from './llhttp.js';

/** HTTP/1.1 on the wire, shared by lb's client side (server.ts) and backend side (upstream.ts). */
export const CRLF = '\r\n';

/** One piece of a chunked body as it goes on the wire: size line, data, CRLF (one writev). */
export function chunkParts(chunk: Buffer): [string, Buffer, string] {
  return [`${chunk.length.toString(16)}${CRLF}`, chunk, CRLF];
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
