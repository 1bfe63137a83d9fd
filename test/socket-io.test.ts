import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { SocketIO } from '../src/proxy/socket-io.js';
import { held, now } from '../src/util/clock.js';
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

/** Everything `socket` receives until the other side ends. */
async function readToEnd(socket: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of socket) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('SocketIO', () => {
  for (const secure of [false, true]) {
    const path = secure ? 'stream path (TLS)' : 'direct path (plain TCP)';

    it(`${path}: keeps byte order through a full kernel buffer, emits 'drain' once it is written, ends after the data`, async () => {
      const { client, peer } = await pair(secure);
      const io = new SocketIO(client, () => {});
      expect(io.direct).toBe(!secure);
      peer.pause();
      const big = Buffer.alloc(32 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
      expect(io.write(big)).toBe(false); // far more than the kernel takes at once
      expect(io.pending).toBeGreaterThan(0);
      io.write('tail|');
      io.writev(['head|', Buffer.from('body|'), 'end|']);
      const received = readToEnd(peer);
      await once(client, 'drain');
      expect(io.pending).toBe(0);
      io.write('last');
      client.end(); // the FIN goes after everything queued
      const expected = Buffer.concat([big, Buffer.from('tail|head|body|end|last')]);
      const got = await received;
      expect(got.length).toBe(expected.length);
      expect(sha(got)).toBe(sha(expected));
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

  it('writeProgressed tells a stalled direct write from one still going out', async () => {
    const { client, peer } = await pair();
    const io = new SocketIO(client, () => {});
    expect(io.writeProgressed()).toBe(false); // nothing queued
    peer.pause();
    io.write(Buffer.alloc(32 * 1024 * 1024));
    expect(io.writeProgressed()).toBe(true); // queued since the last look
    await new Promise((r) => setTimeout(r, 100));
    expect(io.writeProgressed()).toBe(false); // the peer reads nothing: stalled
    peer.resume();
    await new Promise((r) => setTimeout(r, 20));
    expect(io.pending === 0 || io.writeProgressed()).toBe(true);
  });

  it('a write request is reused only after a write that finished at once, never one libuv still holds', async () => {
    const a = await pair();
    const b = await pair();
    const ioA = new SocketIO(a.client, () => {});
    const ioB = new SocketIO(b.client, () => {});
    b.peer.pause();
    const big = Buffer.alloc(32 * 1024 * 1024, 7);
    ioA.write('a1|'); // finished at once: its request object is kept for the next write
    expect(ioB.write(big)).toBe(false); // takes that object, and libuv keeps it until the write completes
    ioA.write('a2|'); // so this one needs a fresh object
    ioB.write('b-tail'); // queued behind the big write, again on an object of its own
    ioA.write(Buffer.from('a3'));
    a.client.end();
    expect(String(await readToEnd(a.peer))).toBe('a1|a2|a3');
    const received = readToEnd(b.peer);
    // Each queued write completes on its own object: the socket that queued them gets its 'drain'.
    await once(b.client, 'drain');
    b.client.end();
    const got = await received;
    expect(got.length).toBe(big.length + 6);
    expect(sha(got)).toBe(sha(Buffer.concat([big, Buffer.from('b-tail')])));
  });

  it('a socket destroyed with direct writes queued closes quietly: no drain, no error', async () => {
    const { client, peer } = await pair();
    const io = new SocketIO(client, () => {});
    peer.pause();
    let drains = 0;
    const errors: Error[] = [];
    client.on('drain', () => drains++);
    client.on('error', (e) => errors.push(e));
    expect(io.write(Buffer.alloc(32 * 1024 * 1024))).toBe(false);
    client.destroy();
    await once(client, 'close');
    await new Promise((r) => setTimeout(r, 50));
    expect(drains).toBe(0);
    expect(errors).toEqual([]);
  });

  it('takes the handle node:net ends up with when a host has several addresses (autoSelectFamily)', async () => {
    const peers: net.Socket[] = [];
    const server = net.createServer((s) => peers.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    // 127.0.0.2 refuses (nothing listens there), so node:net moves on to 127.0.0.1 with a new handle.
    const addresses = [{ address: '127.0.0.2', family: 4 }, { address: '127.0.0.1', family: 4 }];
    const client = net.connect({
      host: 'two-addresses.test',
      port,
      autoSelectFamily: true,
      lookup: ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) =>
        opts.all ? cb(null, addresses) : cb(null, addresses[1].address, 4)) as unknown as net.LookupFunction,
    });
    cleanup.push(() => new Promise<void>((r) => {
      client.destroy();
      for (const p of peers) p.destroy();
      server.close(() => r());
    }));
    const first = (client as unknown as { _handle: unknown })._handle;
    const got: string[] = [];
    const io = new SocketIO(client, (c) => got.push(c.toString()));
    await once(client, 'connect');
    expect((client as unknown as { _handle: unknown })._handle).not.toBe(first); // the case under test
    expect(io.direct).toBe(true);
    while (peers.length === 0) await new Promise((r) => setTimeout(r, 5));
    const peer = peers[0];
    expect(io.write('ping')).toBe(true);
    const seen: string[] = [];
    peer.on('data', (c: Buffer) => seen.push(c.toString()));
    io.pause();
    peer.write('pong');
    await new Promise((r) => setTimeout(r, 150));
    expect(got).toEqual([]); // paused on the handle that is really reading
    io.resume();
    await new Promise((r) => setTimeout(r, 100));
    expect(got.join('')).toBe('pong');
    expect(seen.join('')).toBe('ping');
  });

  it('a socket detached while still connecting stays on plain data events', async () => {
    const peers: net.Socket[] = [];
    const server = net.createServer((s) => peers.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = net.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1' });
    cleanup.push(() => new Promise<void>((r) => {
      client.destroy();
      for (const p of peers) p.destroy();
      server.close(() => r());
    }));
    const mine: string[] = [];
    const io = new SocketIO(client, (c) => mine.push(c.toString()));
    io.detach();
    const theirs: string[] = [];
    client.on('data', (c: Buffer) => theirs.push(c.toString()));
    await once(client, 'connect');
    expect(io.direct).toBe(false);
    while (peers.length === 0) await new Promise((r) => setTimeout(r, 5));
    peers[0].write('hello');
    await new Promise((r) => setTimeout(r, 100));
    expect(mine).toEqual([]);
    expect(theirs.join('')).toBe('hello');
  });

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

  for (const secure of [false, true]) {
    it(`${secure ? 'stream path' : 'direct path'}: reads and writes are counted in ticks`, async () => {
      const { client, peer } = await pair(secure);
      const io = new SocketIO(client, () => {});
      const before = io.ticks;
      io.write('a');
      io.writev(['b', Buffer.from('c')]);
      peer.write('x');
      while (io.ticks < before + 3) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 20));
      // Two writes and one read; on the stream path each write also counts when it has gone out.
      expect(io.ticks).toBe(before + (secure ? 5 : 3));
    });
  }

  it("direct path with refreshTimer off: reads and writes leave the socket's timer to its owner", async () => {
    const { client, peer } = await pair();
    const io = new SocketIO(client, () => {});
    io.refreshTimer = false;
    let timedOut = 0;
    client.setTimeout(300);
    client.on('timeout', () => timedOut++);
    // Activity every 50 ms both ways, yet the timer runs out: only the owner restarts it now.
    const talk = setInterval(() => {
      io.write('y');
      peer.write('z');
    }, 50);
    onTestFinished(() => clearInterval(talk));
    await once(client, 'timeout');
    expect(timedOut).toBe(1);
    io.restartTimer();
    await once(client, 'timeout');
    expect(timedOut).toBe(2);
  });

  it('readBuffer own: reads land in one reused buffer; after detach they come as data events, each its own copy', async () => {
    const { client, peer } = await pair();
    const views: Buffer[] = [];
    const copies: Buffer[] = [];
    const io = new SocketIO(client, (c) => {
      views.push(c);
      copies.push(Buffer.from(c));
    }, { readBuffer: 'own' });
    expect(io.direct).toBe(true);
    for (const text of ['one', 'two', 'three']) {
      peer.write(text);
      while (!Buffer.concat(copies).toString().includes(text)) await new Promise((r) => setTimeout(r, 5));
    }
    expect(Buffer.concat(copies).toString()).toBe('onetwothree');
    // Nothing kept a chunk: every read went to the same memory.
    expect(new Set(views.map((v) => v.buffer)).size).toBe(1);
    io.detach();
    const after: Buffer[] = [];
    client.on('data', (c: Buffer) => after.push(c));
    for (const text of ['four', 'five']) {
      peer.write(text);
      while (!Buffer.concat(after).toString().includes(text)) await new Promise((r) => setTimeout(r, 5));
    }
    expect(Buffer.concat(after).toString()).toBe('fourfive');
    expect(after.every((c) => c.buffer !== views[0].buffer)).toBe(true);
    expect(copies.length).toBe(views.length); // onData saw nothing after detach
    // Backpressure still works: a paused socket stops reading and resumes.
    client.pause();
    peer.write('six');
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(after).toString()).toBe('fourfive');
    client.resume();
    while (!Buffer.concat(after).toString().includes('six')) await new Promise((r) => setTimeout(r, 5));
  });

  for (const secure of [false, true]) {
    it(`${secure ? 'stream' : 'direct'} path: everything one read sets off shares one clock reading; outside a read the clock is live`, async () => {
      const { client, peer } = await pair(secure);
      const seen: Array<[number, number, number]> = [];
      new SocketIO(client, () => {
        const first = now();
        const until = Date.now() + 5;
        while (Date.now() < until); // time passes within the read's callback
        seen.push([first, now(), Date.now()]);
      });
      peer.write('x');
      while (seen.length === 0) await new Promise((r) => setTimeout(r, 2));
      const [first, second, wall] = seen[0];
      expect(second).toBe(first);
      expect(wall - first).toBeGreaterThanOrEqual(5);
      // Outside any read: the clock is the wall clock, not the last read's.
      const a = now();
      await new Promise((r) => setTimeout(r, 5));
      expect(now() - a).toBeGreaterThanOrEqual(4);
    });
  }

  it('held: nested calls keep the outer reading, and a throw releases the clock', () => {
    let inner = 0;
    let outer = 0;
    held(() => {
      outer = now();
      const until = Date.now() + 3;
      while (Date.now() < until);
      held(() => void (inner = now()), undefined);
    }, undefined);
    expect(inner).toBe(outer);
    expect(() => held(() => {
      throw new Error('boom');
    }, undefined)).toThrow('boom');
    const a = now();
    const until = Date.now() + 3;
    while (Date.now() < until);
    expect(now()).toBeGreaterThan(a); // not stuck at the failed call's reading
  });

  describe('small direct writes wait for the end of the turn', () => {
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

    it('go out together after the I/O phase, in order, counted as pending until then', async () => {
      const { client, peer } = await pair();
      const io = new SocketIO(client, () => {});
      const got: Buffer[] = [];
      peer.on('data', (c: Buffer) => got.push(c));
      expect(io.write('a|')).toBe(true);
      expect(io.writev(['b|', Buffer.from('c|')])).toBe(true);
      expect(io.write(Buffer.from('d'))).toBe(true);
      expect(io.pending).toBe(7); // nothing handed to the kernel yet
      await turn();
      expect(io.pending).toBe(0);
      while (Buffer.concat(got).length < 7) await new Promise((r) => setTimeout(r, 5));
      expect(String(Buffer.concat(got))).toBe('a|b|c|d');
    });

    it('a Buffer may be reused as soon as write returns: what goes out is what it held then', async () => {
      const { client, peer } = await pair();
      const io = new SocketIO(client, () => {});
      const buf = Buffer.from('first');
      io.write(buf);
      buf.write('XXXXX'); // a read buffer is read into again before the turn ends
      io.writev([buf, '|']);
      buf.fill(0);
      client.end();
      expect(String(await readToEnd(peer))).toBe('firstXXXXX|');
    });

    it('a large write goes at once, after what waits', async () => {
      const { client, peer } = await pair();
      const io = new SocketIO(client, () => {});
      const big = Buffer.alloc(64 * 1024, 'L');
      io.write('small|');
      io.write(big);
      expect(io.pending).toBe(0); // both handed to the kernel in the large write's writev
      io.write('|after');
      client.end();
      expect(String(await readToEnd(peer))).toBe(`small|${big}|after`);
    });

    it('up to 4 KiB a socket waits; a write that would pass that goes at once', async () => {
      const { client, peer } = await pair();
      const io = new SocketIO(client, () => {});
      io.write(Buffer.alloc(4096, 'a'));
      expect(io.pending).toBe(4096);
      io.write('b'); // 4,097 bytes: all of it to the kernel now
      expect(io.pending).toBe(0);
      client.end();
      expect(String(await readToEnd(peer))).toBe(`${'a'.repeat(4096)}b`);
    });

    it('backpressure: to a reader that never reads, write() turns false and what is held stays bounded', async () => {
      const { client, peer } = await pair();
      peer.pause();
      const io = new SocketIO(client, () => {});
      const piece = Buffer.alloc(4000, 'x');
      let sent = 0;
      let ok = true;
      while (ok && sent < 64 * 1024 * 1024) {
        ok = io.write(piece);
        sent += piece.length;
        await turn();
      }
      expect(ok).toBe(false);
      expect(io.pending).toBeLessThan(client.writableHighWaterMark + 2 * piece.length);
    });

    it('bytes written through the socket itself keep their place, corked or not', async () => {
      const mixed = await pair();
      const io = new SocketIO(mixed.client, () => {});
      io.write('a');
      mixed.client.write('b');
      io.write('c');
      mixed.client.end();
      expect(String(await readToEnd(mixed.peer))).toBe('abc');

      for (const first of ['write', 'writev'] as const) {
        const corked = await pair();
        const io2 = new SocketIO(corked.client, () => {});
        io2.write('1');
        corked.client.cork(); // the next writes must take the stream path, after what waits
        if (first === 'write') io2.write('2');
        else io2.writev(['2', '3']);
        io2.write('4');
        corked.client.uncork();
        corked.client.end();
        expect(String(await readToEnd(corked.peer))).toBe(first === 'write' ? '124' : '1234');
      }
    });

    it('socket.end() and detach() send what waits first; a destroyed socket drops it quietly', async () => {
      const ended = await pair();
      const io = new SocketIO(ended.client, () => {});
      io.write('bye');
      ended.client.end(); // as ClientConnection.close() and net's destroySoon do
      expect(String(await readToEnd(ended.peer))).toBe('bye');

      const handed = await pair();
      const io2 = new SocketIO(handed.client, () => {});
      io2.write('101|');
      io2.detach();
      handed.client.write('tunnel'); // the new owner writes through the socket itself
      handed.client.end();
      expect(String(await readToEnd(handed.peer))).toBe('101|tunnel');

      const gone = await pair();
      const io3 = new SocketIO(gone.client, () => {});
      const errors: Error[] = [];
      gone.client.on('error', (e) => errors.push(e));
      io3.write('never');
      gone.client.destroy();
      await turn();
      expect(io3.pending).toBe(0);
      expect(String(await readToEnd(gone.peer))).toBe('');
      expect(errors).toEqual([]);
    });
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

describe("node:net internals SocketIO relies on", () => {
  it('a socket\'s _writableState has length, corked and ending, agreeing with the public getters (a Node upgrade that changes them fails here)', async () => {
    const { client, peer } = await pair();
    const w = (client as unknown as { _writableState: { length: number; corked: number; ending: boolean } })._writableState;
    const agree = (): void => {
      expect(w.length).toBe(client.writableLength);
      expect(w.corked).toBe(client.writableCorked);
      expect(w.ending).toBe(client.writableEnded);
    };
    agree();
    client.cork();
    client.write('held back');
    expect(w.corked).toBe(1);
    expect(w.length).toBeGreaterThan(0);
    agree();
    client.uncork();
    client.end();
    expect(w.ending).toBe(true);
    agree();
    peer.resume();
  });
});
