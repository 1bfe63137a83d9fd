import { describe, expect, it } from 'vitest';
import { fieldIs, stripHopByHop, type HeaderContext } from '../src/proxy/headers.js';

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
