import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketIO } from '../src/proxy/socket-io.js';
import { makeCert, pem } from './helpers/certs.js';

/**
 * src/proxy/socket-io.ts on real loopback sockets: the direct handle path (plain TCP) and the
 * stream path (TLS) must behave alike: byte order, backpressure and 'drain', pause/resume, end of
 * stream, the socket's inactivity timer, and handing the socket back to 'data' events.
 */

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A connected pair: `client` (ours, wrapped by the test) and the server's end of it. */
async function pair(secure = false): Promise<{ client: net.Socket; peer: net.Socket }> {
  const cert = secure ? makeCert() : null;
  const peers: net.Socket[] = [];
  const server = cert
    ? tls.createServer({ cert: pem(cert.cert), key: pem(cert.key) }, (s) => peers.push(s))
    : net.createServer((s) => peers.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const client = cert
    ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
    : net.connect({ port, host: '127.0.0.1' });
  await once(client, cert ? 'secureConnect' : 'connect');
  while (peers.length === 0) await new Promise((r) => setTimeout(r, 5));
  cleanup.push(() => new Promise<void>((r) => {
    client.destroy();
    for (const p of peers) p.destroy();
    server.close(() => r());
  }));
  return { client, peer: peers[0] };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function readAll(socket: net.Socket, bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of socket) {
    parts.push(c as Buffer);
    n += (c as Buffer).length;
    if (n >= bytes) break;
  }
  return Buffer.concat(parts);
}

describe('SocketIO', () => {
  for (const secure of [false, true]) {
    const path = secure ? 'stream path (TLS)' : 'direct path (plain TCP)';

    it(`${path}: keeps byte order through a full kernel buffer and emits 'drain' once it is written`, async () => {
      const { client, peer } = await pair(secure);
      const io = new SocketIO(client, () => {});
      expect(io.direct).toBe(!secure);
      peer.pause();
      const big = Buffer.alloc(32 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
      let drains = 0;
      client.on('drain', () => drains++);
      expect(io.write(big)).toBe(false); // far more than the kernel takes at once
      expect(io.pending).toBeGreaterThan(0);
      io.write('tail|');
      io.writev(['head|', Buffer.from('body|'), 'end']);
      const expected = Buffer.concat([big, Buffer.from('tail|head|body|end')]);
      const got = await readAll(peer, expected.length);
      expect(got.length).toBe(expected.length);
      expect(sha(got)).toBe(sha(expected));
      await new Promise((r) => setImmediate(r));
      expect(drains).toBeGreaterThan(0);
      expect(io.pending).toBe(0);
    });

    it(`${path}: pause stops reading, resume delivers what waited, then the end of stream`, async () => {
      const { client, peer } = await pair(secure);
      const got: string[] = [];
      const io = new SocketIO(client, (c) => got.push(c.toString()));
      let ended = false;
      client.on('end', () => (ended = true));
      io.pause();
      peer.end('abc');
      await new Promise((r) => setTimeout(r, 150));
      expect(got).toEqual([]);
      expect(ended).toBe(false);
      io.resume();
      await once(client, 'end');
      expect(got.join('')).toBe('abc');
    });
  }

  it('direct reads and writes restart the socket inactivity timer, as node:net does', async () => {
    const { client, peer } = await pair();
    let chunks = 0;
    const io = new SocketIO(client, () => chunks++);
    expect(io.direct).toBe(true);
    let timedOut = 0;
    client.setTimeout(400, () => timedOut++);
    // Reads: a byte every 50 ms for 1.2 s keeps the socket active.
    for (let i = 0; i < 24; i++) {
      peer.write('x');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(timedOut).toBe(0);
    expect(chunks).toBeGreaterThan(10);
    // Writes alone keep it active too.
    for (let i = 0; i < 24; i++) {
      io.write('y');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(timedOut).toBe(0);
    await once(client, 'timeout');
  });

  it('detach hands the socket back to plain data events, reading again if it was paused', async () => {
    const { client, peer } = await pair();
    const mine: string[] = [];
    const io = new SocketIO(client, (c) => mine.push(c.toString()));
    peer.write('one');
    await new Promise((r) => setTimeout(r, 50));
    io.pause();
    io.detach();
    expect(io.direct).toBe(false);
    const theirs: string[] = [];
    client.on('data', (c: Buffer) => theirs.push(c.toString()));
    peer.write('two');
    await new Promise((r) => setTimeout(r, 100));
    expect(mine).toEqual(['one']);
    expect(theirs.join('')).toBe('two');
  });
});
