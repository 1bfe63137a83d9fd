import { describe, expect, it } from 'vitest';
import { startLoggingBackend, startRawBackend, exchange, lbProcess, statuses } from '../helpers/raw.js';

const config = (url: string, extra = ''): string => `
listeners: [ { name: web, host: 127.0.0.1, port: \${PORT}, pool: app } ]
pools:
  app:
    affinity: { mode: none }
    passiveHealth: { enabled: false }
    backends: [ { id: n1, url: "${url}" } ]
admin: { enabled: false }
state: { file: "\${DIR}/state.json" }
${extra}
`;

const H = 'Host: app.example\r\n';

describe('request smuggling and framing (RFC 9112 §6, §11.2): rejected with 400 and closed, or forwarded as exactly one well-framed request', () => {
  it.each([
    ['Content-Length with Transfer-Encoding (RFC 9112 §6.1: MAY reject; lb does)', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`],
    ['two different Content-Lengths (§6.3 item 5)', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`],
    ['two equal Content-Lengths', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`],
    ['Content-Length with a sign', `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`],
    ['Content-Length list', `POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`],
    ['Transfer-Encoding: xchunked (chunked not final, §6.3 item 4)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
    ['Transfer-Encoding with a space before the colon (§5.1)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
    ['Transfer-Encoding: chunked, identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
    ['a bad chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`],
    ['a chunk size that overflows', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n`],
    ['bare LF line endings (§2.2)', `GET / HTTP/1.1\nHost: app.example\n\n`],
    ['obs-fold (§5.2: reject with 400)', `GET / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`],
    ['a space inside a header name', `GET / HTTP/1.1\r\n${H}X A: b\r\n\r\n`],
    ['a control character in a value', `GET / HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`],
    ['no Host (§3.2: MUST 400)', `GET / HTTP/1.1\r\n\r\n`],
    ['two Hosts (§3.2: MUST 400)', `GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n`],
    ['a non-HTTP absolute target', `GET ftp://x/y HTTP/1.1\r\n${H}\r\n`],
  ])('%s', async (_name, bytes) => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config(b.url));
    const r = await exchange(lb.port, bytes);
    expect(statuses(r.text)).toEqual([400]);
    expect(r.text).toMatch(/connection: close/i);
    expect(r.closed).toBe(true);
    expect(b.logged).toEqual([]); // nothing reached the backend
    // The process is unharmed: the next client is served.
    expect(statuses((await exchange(lb.port, `GET /next HTTP/1.1\r\n${H}Connection: close\r\n\r\n`)).text)).toEqual([200]);
  });

  it('pipelined requests reach the backend as exactly two well-framed requests, answered in order', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config(b.url));
    const r = await exchange(lb.port, `POST /one HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabcGET /two HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    expect(statuses(r.text)).toEqual([200, 200]);
    expect(r.text.indexOf('"/one"')).toBeLessThan(r.text.indexOf('"/two"'));
    expect(b.logged.map((l) => [l.method, l.url, l.body])).toEqual([['POST', '/one', 'abc'], ['GET', '/two', '']]);
  });

  it('an absolute-form target becomes origin-form and its authority the Host (RFC 9112 §3.2.2)', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config(b.url));
    const r = await exchange(lb.port, `GET http://shop.example/cart?x=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n`);
    expect(statuses(r.text)).toEqual([200]);
    expect(b.logged[0]).toMatchObject({ url: '/cart?x=1', headers: { host: 'shop.example' } });
  });

  it.each([
    ['Content-Length and Transfer-Encoding together', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['an invalid status line', 'HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok'],
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.2\r\n'],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok'],
    ['huge headers (over 64 KiB)', `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}\r\nContent-Length: 2\r\n\r\nok`],
  ])('a backend answering with %s gives 502, never a half-parsed response', async (_name, answer) => {
    const bad = await startRawBackend((s) => s.end(answer));
    const lb = await lbProcess(config(bad.url, 'retries: { tries: 0 }'));
    const r = await exchange(lb.port, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    expect(statuses(r.text)).toEqual([502]);
    expect(r.text).not.toMatch(/X-Big|SSH-2|2OO/);
  });
});

describe('header abuse', () => {
  it('Connection cannot strip what lb adds or relies on; hop-by-hop fields it names are removed', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config(b.url));
    await exchange(
      lb.port,
      `GET / HTTP/1.1\r\n${H}Connection: close, X-Forwarded-For, Cookie, Authorization, X-Request-Id, X-Secret-Hop\r\n` +
        `Cookie: app=1\r\nAuthorization: Bearer abc\r\nX-Request-Id: req-123\r\nX-Secret-Hop: drop-me\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n`,
    );
    const h = b.logged[0].headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1'); // spoofed value from an untrusted client replaced
    expect(h.cookie).toBe('app=1');
    expect(h.authorization).toBe('Bearer abc');
    expect(h['x-request-id']).toBe('req-123');
    expect(h['x-secret-hop']).toBeUndefined();
    expect(h.connection ?? '').not.toMatch(/x-forwarded-for|cookie|authorization/i);
  });

  it('spoofed X-Forwarded-* from an untrusted client are replaced, from a trusted proxy XFF is appended', async () => {
    const b = await startLoggingBackend();
    const spoof = `X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: bank.example\r\nX-Forwarded-Port: 443\r\n`;
    const untrusted = await lbProcess(config(b.url));
    await exchange(untrusted.port, `GET / HTTP/1.1\r\n${H}${spoof}Connection: close\r\n\r\n`);
    expect(b.logged[0].headers).toMatchObject({ 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'app.example', 'x-forwarded-port': String(untrusted.port) });
    const trusted = await lbProcess(config(b.url, 'trustedProxies: ["127.0.0.0/8"]'));
    await exchange(trusted.port, `GET / HTTP/1.1\r\n${H}${spoof}Connection: close\r\n\r\n`);
    expect(b.logged[1].headers['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
  });

  it('oversized headers get 431, too many header fields get 431, and the next client is served', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config(b.url));
    const big = await exchange(lb.port, `GET / HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(statuses(big.text)).toEqual([431]);
    expect(big.closed).toBe(true);
    const many = await exchange(lb.port, `GET / HTTP/1.1\r\n${H}${Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`);
    expect(statuses(many.text)).toEqual([431]);
    expect(many.closed).toBe(true);
    expect(b.logged).toEqual([]);
    expect(statuses((await exchange(lb.port, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`)).text)).toEqual([200]);
  });
});
