import { copyFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import https from 'node:https';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startBackend } from './helpers/backends.js';
import { startLb } from './helpers/lb.js';
import { makeCert } from './helpers/certs.js';
import { get } from './helpers/client.js';

function fingerprintOf(port: number, opts: tls.ConnectionOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false, ...opts }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.on('error', reject);
  });
}

function tlsYaml(backendUrl: string, dir: string): string {
  return `
listeners:
  - name: web-tls
    protocol: https
    host: 127.0.0.1
    port: 0
    pool: app
    tls: { cert: ${dir}/cert.pem, key: ${dir}/cert-key.pem }
  - { name: to-https, host: 127.0.0.1, port: 0, redirectToHttps: 8443 }
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["k1-secret-value"] } }
    backends: [ { id: n1, url: "${backendUrl}" } ]
admin: { enabled: false }
state: { file: "\${DIR}/state.json" }
`;
}

describe('HTTPS', () => {
  it('terminates TLS with a generated certificate, marks cookies Secure, and swaps the certificate on disk without dropping open connections', async () => {
    const b = await startBackend('n1');
    const first = makeCert();
    const lb = await startLb(tlsYaml(b.url, first.dir), { dir: first.dir });
    const port = lb.port('web-tls');
    expect(await fingerprintOf(port)).toBe(first.fingerprint);

    // An open keep-alive connection, used before and after the swap.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    const call = () =>
      new Promise<{ status: number; cookie: string; fp: string; reused: boolean }>((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port, path: '/', agent, servername: 'localhost' }, (res) => {
          const fp = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, cookie: String(res.headers['set-cookie'] ?? ''), fp, reused: req.reusedSocket }));
        });
        req.on('error', reject);
      });
    const before = await call();
    expect(before.status).toBe(200);
    expect(before.cookie).toMatch(/; Secure$/);
    expect(b.seen[0].headers['x-forwarded-proto']).toBe('https');

    const second = makeCert(first.dir, 'next');
    copyFileSync(second.cert, `${first.dir}/cert.pem`);
    copyFileSync(second.key, `${first.dir}/cert-key.pem`);
    await expect.poll(() => fingerprintOf(port), { timeout: 8000, interval: 200 }).toBe(second.fingerprint);

    const after = await call();
    expect(after.status).toBe(200);
    expect(after.reused).toBe(true);
    expect(after.fp).toBe(first.fingerprint);
    agent.destroy();
  });

  it('a small answer leaves as one TLS record, its head and body together (the head is sent at once, but not alone)', async () => {
    const cert = makeCert();
    const b = await startBackend('n1', { handler: (_req, res) => res.writeHead(200, { 'content-length': 2 }).end('ok') });
    const lb = await startLb(`
listeners:
  - { name: web-tls, protocol: https, host: 127.0.0.1, port: 0, pool: app, tls: { cert: ${cert.cert}, key: ${cert.key} } }
pools:
  app:
    affinity: { mode: none }
    backends: [ { id: n1, url: "${b.url}" } ]
admin: { enabled: false }
state: { file: "\${DIR}/state.json" }
`);
    // A TCP relay between the client and lb counts the TLS records lb sends once the handshake is over.
    let records = 0;
    let counting = false;
    const relay = net.createServer((c) => {
      const up = net.connect(lb.port('web-tls'), '127.0.0.1');
      c.pipe(up);
      up.on('data', (d: Buffer) => {
        for (let at = 0; counting && at + 5 <= d.length; at += 5 + d.readUInt16BE(at + 3)) records++;
        c.write(d);
      });
      c.on('error', () => undefined);
      up.on('error', () => undefined);
      c.on('close', () => up.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    onTestFinished(() => void relay.close());
    const s = tls.connect({ port: (relay.address() as net.AddressInfo).port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false });
    onTestFinished(() => void s.destroy());
    await new Promise((r) => s.on('secureConnect', r));
    await new Promise((r) => setTimeout(r, 100)); // session tickets come after the handshake
    let got = '';
    s.on('data', (d) => (got += d));
    counting = true;
    for (let i = 1; i <= 5; i++) {
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      for (let n = 0; n < 100 && got.split('\r\n\r\nok').length <= i; n++) await new Promise((r) => setTimeout(r, 10));
    }
    expect(got.split('\r\n\r\nok')).toHaveLength(6);
    expect(records).toBe(5);
  });

  it('refuses TLS 1.0 and 1.1 by default', async () => {
    const b = await startBackend('n1');
    const cert = makeCert();
    const lb = await startLb(tlsYaml(b.url, cert.dir), { dir: cert.dir });
    for (const v of ['TLSv1', 'TLSv1.1'] as const) {
      await expect(fingerprintOf(lb.port('web-tls'), { minVersion: v, maxVersion: v, ciphers: 'DEFAULT:@SECLEVEL=0' })).rejects.toThrow();
    }
    expect(await fingerprintOf(lb.port('web-tls'), { maxVersion: 'TLSv1.2' })).toBe(cert.fingerprint);
  });

  it('a redirect listener answers 308 to the same host and path on the HTTPS port', async () => {
    const b = await startBackend('n1');
    const cert = makeCert();
    const lb = await startLb(tlsYaml(b.url, cert.dir), { dir: cert.dir });
    const r = await get(`http://127.0.0.1:${lb.port('to-https')}/a/b?c=1`, { method: 'POST', body: 'x', headers: { host: 'shop.example:8081' } });
    expect(r.status).toBe(308);
    expect(r.headers.location).toBe('https://shop.example:8443/a/b?c=1');
  });
});
