import net from 'node:net';
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { request } from 'undici';
import { startLoggingBackend, startRawBackend, exchange, lbProcess, statuses } from '../helpers/raw.js';
import { runCli } from '../helpers/process.js';
import { makeCert } from '../helpers/certs.js';
import { deadPort } from '../helpers/backends.js';
import { CookieCodec } from '../../src/affinity/cookie-codec.js';

const config = (urls: string[], extra = '', pool = ''): string => `
listeners: [ { name: web, host: 127.0.0.1, port: \${PORT}, pool: app } ]
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["hostile-secret-value"] } }
    passiveHealth: { enabled: false }
${pool}
    backends:
${urls.map((u, i) => `      - { id: n${i + 1}, url: "${u}" }`).join('\n')}
admin: { enabled: false }
state: { file: "\${DIR}/state.json" }
${extra}
`;

const H = 'Host: app.example\r\n';
const served = async (port: number): Promise<number[]> => statuses((await exchange(port, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`)).text);
const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

describe('slow and hostile clients', () => {
  it('slowloris: a client trickling its headers gets 408 at timeouts.requestHeaders; others are served meanwhile', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config([b.url], 'timeouts: { requestHeaders: 1s }'));
    const sock = net.connect(lb.port, '127.0.0.1');
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (text += d));
    sock.on('error', () => undefined);
    const closed = new Promise((r) => sock.on('close', r));
    const drip = setInterval(() => sock.writable && sock.write('X'), 100);
    onTestFinished(() => clearInterval(drip));
    sock.write(`GET / HTTP/1.1\r\n${H}X-Slow: `);
    expect(await served(lb.port)).toEqual([200]);
    await closed;
    clearInterval(drip);
    expect(statuses(text)).toEqual([408]);
    expect(b.logged.map((l) => l.url)).toEqual(['/']); // only the normal client's request
  });

  it('a slow body upload does not hold up other clients', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config([b.url]));
    const sock = net.connect(lb.port, '127.0.0.1');
    sock.on('error', () => undefined);
    onTestFinished(() => sock.destroy());
    sock.write(`POST /upload HTTP/1.1\r\n${H}Content-Length: 1000\r\n\r\n`);
    const drip = setInterval(() => sock.writable && sock.write('x'), 50);
    onTestFinished(() => clearInterval(drip));
    for (let i = 0; i < 5; i++) expect(await served(lb.port)).toEqual([200]);
  });

  it('a client that stops reading a large response: lb memory stays bounded (backpressure to the backend)', async () => {
    let sent = 0;
    const b = await startLoggingBackend((_l, res) => {
      const chunk = Buffer.alloc(64 * 1024, 'z');
      const pump = (): void => {
        while (sent < 512 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const lb = await lbProcess(config([b.url]));
    const before = rssKiB(lb.proc.proc.pid!);
    const sock = net.connect(lb.port, '127.0.0.1');
    onTestFinished(() => sock.destroy());
    sock.write(`GET /huge HTTP/1.1\r\n${H}\r\n`);
    sock.pause(); // never read
    await new Promise((r) => setTimeout(r, 2000));
    const after = rssKiB(lb.proc.proc.pid!);
    expect(sent).toBeLessThan(64 * 1024 * 1024); // the backend was stopped by backpressure, far short of 512 MiB
    expect(after - before).toBeLessThan(64 * 1024); // KiB: lb buffered nowhere near the body
    expect(await served(lb.port)).toEqual([200]);
  });

  it('thousands of idle connections: other clients keep being served', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config([b.url]));
    const idle: net.Socket[] = [];
    onTestFinished(() => idle.forEach((s) => s.destroy()));
    for (let i = 0; i < 3000; i++) {
      const s = net.connect(lb.port, '127.0.0.1');
      s.on('error', () => undefined);
      idle.push(s);
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 5; i++) expect(await served(lb.port)).toEqual([200]);
  });
});

describe('broken backends', () => {
  it('never answers: 504 at backendResponse, the connection to it freed', async () => {
    const opened: net.Socket[] = [];
    const silent = net.createServer((s) => opened.push(s.on('error', () => undefined).resume()));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      opened.forEach((s) => s.destroy());
      silent.close();
    });
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const lb = await lbProcess(config([url], 'timeouts: { backendResponse: 500ms }\nretries: { tries: 0 }'));
    const r = await exchange(lb.port, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    expect(statuses(r.text)).toEqual([504]);
    await new Promise((res) => setTimeout(res, 200));
    expect(opened.filter((s) => !s.destroyed && !s.readableEnded).length).toBe(0); // lb closed its side
  });

  it('dies mid-response: the client connection is aborted, never a truncated body presented as complete', async () => {
    const dying = await startRawBackend((s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + 'a'.repeat(1000));
      setTimeout(() => s.destroy(), 50);
    });
    const lb = await lbProcess(config([dying.url]));
    const res = await request(`http://127.0.0.1:${lb.port}/`);
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
  });

  it('closes keep-alive connections under lb\'s feet: idempotent requests are retried safely, none fails', async () => {
    let n = 0;
    const flaky = http.createServer((req, res) => {
      n++;
      res.end('ok');
      // Close right after answering, without Connection: close: lb's pooled socket goes stale.
      setImmediate(() => req.socket.destroy());
    });
    flaky.keepAliveTimeout = 1;
    await new Promise<void>((r) => flaky.listen(0, '127.0.0.1', r));
    onTestFinished(() => flaky.close());
    const url = `http://127.0.0.1:${(flaky.address() as net.AddressInfo).port}`;
    const lb = await lbProcess(config([url]));
    const results: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await request(`http://127.0.0.1:${lb.port}/`);
      results.push(r.statusCode);
      await r.body.dump();
    }
    expect(results.every((s) => s === 200)).toBe(true);
    expect(n).toBeGreaterThanOrEqual(50);
  });
});

describe('a backend that refuses a WebSocket upgrade', () => {
  it('its answer is relayed, the connection closed, and bytes sent after it never reach the backend (no tunnel, no smuggling)', async () => {
    const seen: string[] = [];
    const refusing = await startRawBackend((s) => {
      s.on('data', (d: Buffer) => seen.push(d.toString('latin1')));
      s.write('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope');
    });
    const lb = await lbProcess(config([refusing.url]));
    const r = await exchange(
      lb.port,
      `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n` +
        `GET /internal/admin HTTP/1.1\r\nHost: internal\r\n\r\n`,
    );
    expect(statuses(r.text)).toEqual([426]);
    expect(r.closed).toBe(true);
    expect(seen.join('')).not.toContain('/internal/admin');
  });
});

describe('admin and affinity surface', () => {
  it('a non-loopback admin listener without a token refuses to start', async () => {
    const b = await startLoggingBackend();
    const lb = await lbProcess(config([b.url]));
    const file = join(lb.dir, 'open-admin.yaml');
    writeFileSync(file, config([b.url]).replace('${PORT}', String(await deadPort())).replace('${DIR}', lb.dir).replace('admin: { enabled: false }', `admin: { host: 0.0.0.0, port: ${await deadPort()} }`));
    const r = await runCli(['start', '-c', file], { LB_ADMIN_TOKEN: '' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not loopback: set admin\.token or LB_ADMIN_TOKEN/);
  });

  it('the dashboard serves only its own files', async () => {
    const b = await startLoggingBackend();
    const adminPort = await deadPort();
    await lbProcess(config([b.url]).replace('admin: { enabled: false }', `admin: { host: 127.0.0.1, port: ${adminPort}, token: t0k3n-hostile }`));
    for (const path of ['/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/app.js/../../../package.json', '//etc/passwd', '/dashboard/../../config/lb.yaml', '/style.css%00.html']) {
      const r = await exchange(adminPort, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(statuses(r.text)[0], path).not.toBe(200);
      expect(r.text, path).not.toMatch(/"name": "lb"|root:x:0|listeners:/);
    }
    expect(statuses((await exchange(adminPort, 'GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).text)).toEqual([200]);
  });

  it('an affinity cookie reveals no backend id or address, and a forged one cannot pick a backend', async () => {
    const [b1, b2] = await Promise.all([startLoggingBackend(), startLoggingBackend()]);
    const lb = await lbProcess(config([b1.url, b2.url]));
    const r = await exchange(lb.port, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    const value = /set-cookie: lb_affinity=([^;]+)/i.exec(r.text)![1];
    const decoded = Buffer.from(value, 'base64url').toString('latin1');
    for (const secret of ['n1', 'n2', '127.0.0.1', String(b1.port), String(b2.port)]) expect(decoded).not.toContain(secret);
    // A cookie made with another key for "n2" is not honoured, nor is one with the token bytes altered.
    const forged = new CookieCodec(['attacker-key-123']).encode({ backendId: 'n2', issuedAt: Date.now(), lastSeen: Date.now() });
    const buf = Buffer.from(value, 'base64url');
    buf[6] ^= 0xff;
    for (const v of [forged, buf.toString('base64url')]) {
      const res = await exchange(lb.port, `GET / HTTP/1.1\r\n${H}Cookie: lb_affinity=${v}\r\nConnection: close\r\n\r\n`);
      expect(statuses(res.text)).toEqual([200]);
      expect(res.text).toMatch(/set-cookie: lb_affinity=/i); // treated as no cookie: a fresh session
    }
  });
});

describe('TLS', () => {
  it('refuses weak ciphers and old protocols; an unreadable or mismatched key is a clear start-up error', async () => {
    const b = await startLoggingBackend();
    const cert = makeCert();
    const other = makeCert(cert.dir, 'other');
    const tlsYaml = (key: string): string => config([b.url]).replace('{ name: web, host: 127.0.0.1, port: ${PORT}, pool: app }', `{ name: web, protocol: https, host: 127.0.0.1, port: \${PORT}, pool: app, tls: { cert: ${cert.cert}, key: ${key} } }`);
    const lb = await lbProcess(tlsYaml(cert.key));
    const tls = await import('node:tls');
    const handshake = (opts: import('node:tls').ConnectionOptions): Promise<string> =>
      new Promise((resolve) => {
        const s = tls.connect({ port: lb.port, host: '127.0.0.1', rejectUnauthorized: false, ...opts }, () => {
          resolve(`ok ${s.getProtocol()} ${s.getCipher().name}`);
          s.destroy();
        });
        s.on('error', (e) => resolve(`refused ${(e as { code?: string }).code ?? e.message}`));
      });
    expect(await handshake({})).toMatch(/^ok TLSv1\.3/);
    for (const v of ['TLSv1', 'TLSv1.1'] as const) expect(await handshake({ minVersion: v, maxVersion: v, ciphers: 'DEFAULT:@SECLEVEL=0' })).toMatch(/^refused/);
    // Weak suites this client's OpenSSL can still offer: static RSA key exchange, CBC with SHA-1/SHA-256, 3DES.
    const offerable = ['AES128-SHA', 'DES-CBC3-SHA', 'RC4-SHA', 'AES256-SHA256', 'ECDHE-ECDSA-AES128-SHA'].filter((c) => tls.getCiphers().includes(c.toLowerCase()));
    expect(offerable.length).toBeGreaterThanOrEqual(3);
    for (const c of offerable) {
      expect(await handshake({ maxVersion: 'TLSv1.2', ciphers: `${c}:@SECLEVEL=0` }), c).toMatch(/^refused/);
    }
    expect(await handshake({ maxVersion: 'TLSv1.2' })).toMatch(/^ok TLSv1\.2 ECDHE-ECDSA-(AES|CHACHA)/);
    for (const [key, message] of [[other.key, /key values mismatch|does not match|mismatch/i], [join(cert.dir, 'missing.pem'), /missing\.pem/]] as const) {
      const file = join(lb.dir, 'bad-tls.yaml');
      writeFileSync(file, tlsYaml(key).replace('${PORT}', String(await deadPort())).replaceAll('${DIR}', lb.dir));
      const r = await runCli(['start', '-c', file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });
});
