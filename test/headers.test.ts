import { describe, expect, it } from 'vitest';
import { fieldIs, requestHeaders, responseHeaders, stripAffinityCookie, stripHopByHop, type HeaderContext } from '../src/proxy/headers.js';

const TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

describe('fieldIs', () => {
  it('matches a name in any ASCII case and nothing else: every byte in every position, against toLowerCase on token names', () => {
    for (const name of ['content-length', 'x-forwarded-for', 'te', 'www-authenticate2']) {
      for (let at = 0; at < name.length; at++) {
        for (let c = 0; c < 256; c++) {
          const field = name.slice(0, at) + String.fromCharCode(c) + name.slice(at + 1);
          // For token characters (all a field name can hold) the answer is toLowerCase's. Any other
          // byte matches only itself: folding with `| 0x20` alone would take CR for '-' or DEL for '_'.
          const expected = TCHAR.includes(String.fromCharCode(c)) ? field.toLowerCase() === name : field === name;
          expect(fieldIs(field, name), JSON.stringify(field)).toBe(expected);
        }
      }
      expect(fieldIs(name.toUpperCase(), name)).toBe(true);
      expect(fieldIs(`${name}x`, name)).toBe(false);
    }
  });
});

describe('stripHopByHop', () => {
  const ctx = (trusted: boolean): HeaderContext => ({ peer: '127.0.0.1', trusted, proto: 'http', port: 80, requestId: 'r', forwarded: false });
  const raw = [
    'Host', 'a', 'CONNECTION', 'close, X-Extra', 'X-Extra', '1', 'Keep-Alive', 'timeout=1', 'TE', 'trailers', 'Te-Other', 'kept',
    'X-Forwarded-For', '1.2.3.4', 'Forwarded', 'for=x', 'X-LB-Repinned', 'n1', 'Proxy-Authorization', 'p', 'Accept', '*/*', 'Expect', '100-continue',
  ];

  it('drops hop-by-hop, Connection-listed and lb-owned fields in any case, forwarding fields unless trusted', () => {
    expect(stripHopByHop(raw, ctx(false))).toEqual(['Host', 'a', 'Te-Other', 'kept', 'Accept', '*/*']);
    expect(stripHopByHop(raw, ctx(true))).toEqual(['Host', 'a', 'Te-Other', 'kept', 'X-Forwarded-For', '1.2.3.4', 'Forwarded', 'for=x', 'Accept', '*/*']);
  });
});

describe('responseHeaders', () => {
  it('drops hop-by-hop fields and those the backend names in Connection, in any case', () => {
    const base = ['Content-Type', 'text/plain', 'Keep-Alive', 'timeout=5', 'X-Hop', '1', 'Transfer-Encoding', 'chunked', 'Close', 'kept'];
    // The common values name nothing else (a field called "Close" stays).
    expect(responseHeaders(['Connection', 'keep-alive', ...base])).toEqual(['Content-Type', 'text/plain', 'X-Hop', '1', 'Close', 'kept']);
    expect(responseHeaders(['connection', 'CLOSE', ...base])).toEqual(['Content-Type', 'text/plain', 'X-Hop', '1', 'Close', 'kept']);
    expect(responseHeaders(['Connection', 'Keep-Alive, x-HOP', ...base])).toEqual(['Content-Type', 'text/plain', 'Close', 'kept']);
    expect(responseHeaders(['Connection', 'keep-alive', 'Connection', 'X-Hop', ...base])).toEqual(['Content-Type', 'text/plain', 'Close', 'kept']);
  });
});

describe('stripAffinityCookie', () => {
  const ctx: HeaderContext = { peer: '127.0.0.1', trusted: false, proto: 'http', port: 80, requestId: 'r', forwarded: false, affinityCookie: 'lb' };

  it("removes lb's cookie from every Cookie field, drops a field left empty, and keeps the others in order", () => {
    const raw = ['Host', 'a', 'Cookie', 'lb=X', 'Accept', '*/*', 'cookie', 'app=1; lb=X', 'COOKIE', 'lb=Y', 'X-Last', '1'];
    expect(stripAffinityCookie([...raw], ctx)).toEqual(['Host', 'a', 'Accept', '*/*', 'cookie', 'app=1', 'X-Last', '1']);
    expect(stripAffinityCookie(['Cookie', 'lb=X'], ctx)).toEqual([]);
    expect(stripAffinityCookie([...raw], { ...ctx, affinityCookie: undefined })).toEqual(raw);
    expect(stripAffinityCookie(['Cookie', 'app=1', 'Host', 'a'], ctx)).toEqual(['Cookie', 'app=1', 'Host', 'a']);
  });
});

describe('requestHeaders', () => {
  const ctx = (trusted: boolean): HeaderContext => ({ peer: '10.0.0.9', trusted, proto: 'https', port: 8443, requestId: 'rid', forwarded: false });
  const raw = ['Host', 'app.example', 'x-forwarded-for', '1.1.1.1', 'X-Forwarded-Proto', 'http', 'X-Forwarded-Host', 'evil', 'X-Forwarded-Port', '1'];

  it("appends lb's forwarding fields once, replacing an untrusted peer's and keeping a trusted proxy's", () => {
    expect(requestHeaders(raw, ctx(false))).toEqual([
      'Host', 'app.example', 'x-forwarded-for', '10.0.0.9', 'x-forwarded-proto', 'https', 'x-forwarded-host', 'app.example',
      'x-forwarded-port', '8443', 'x-request-id', 'rid',
    ]);
    expect(requestHeaders(raw, ctx(true))).toEqual([
      'Host', 'app.example', 'X-Forwarded-Proto', 'http', 'X-Forwarded-Host', 'evil', 'X-Forwarded-Port', '1',
      'x-forwarded-for', '1.1.1.1, 10.0.0.9', 'x-request-id', 'rid',
    ]);
    // The port's text is cached: another port must not get the last one's.
    expect(requestHeaders(['Host', 'h'], { ...ctx(false), port: 80 })).toContain('80');
  });
});
