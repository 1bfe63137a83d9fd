import { createRequire } from 'node:module';

/**
 * Node's own HTTP/1.1 parser binding (llhttp), as node:http uses it. `_http_common` is the public
 * legacy module node:http itself takes it from. lb drives it directly on both sides of the proxy
 * (src/proxy/server.ts for clients, src/proxy/upstream.ts for backends): same parser, same strict
 * rules, without IncomingMessage, ServerResponse and ClientRequest around each message.
 */
export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [key: number]: unknown;
}

interface LlhttpParserClass {
  new (): LlhttpParser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}

const common = createRequire(import.meta.url)('node:_http_common') as { HTTPParser: LlhttpParserClass; methods: string[] };

export const HTTPParser = common.HTTPParser;
/** Method index (as kOnHeadersComplete reports it) → name. */
export const methods = common.methods;
export const { kOnMessageBegin, kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete } = HTTPParser;

/** A parse error from execute(): `code` is llhttp's (HPE_…). */
export type ParseError = Error & { code?: string };
