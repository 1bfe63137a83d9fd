import type net from 'node:net';
import tls from 'node:tls';
import { getSystemErrorName } from 'node:util';
import { held } from '../util/clock.js';

/**
 * Reads and writes of one proxied socket, below net.Socket's stream machinery when it can be.
 *
 * Why: both sides of every proxied request go through a net.Socket, and its Readable and
 * Writable (addChunk, 'data' emission, writeOrBuffer, corked writev, afterWrite ticks) cost about
 * a tenth of the least a Node proxy can spend per request (bench/RESULTS.md). For a plain TCP
 * socket lb takes the bytes from the libuv handle's read callback and writes straight to the
 * handle while nothing is queued, as node:net itself does underneath. The socket stays the owner
 * of everything else: connecting, timeouts, end of stream and errors (the handle's original read
 * callback still sees every read that is not data), shutdown after end(), destroy.
 *
 * Order is kept: a direct write is made only when net.Socket has nothing buffered or corked
 * (otherwise the bytes go through socket.write), and libuv writes its queue in order. A direct
 * write that the kernel cannot take at once stays queued in libuv (its bytes kept alive here).
 * As with net.Socket, write() returns false once more than the socket's writableHighWaterMark
 * is queued, and the socket emits 'drain' when libuv's queue is empty again.
 *
 * Small direct writes wait for the end of the event loop's I/O phase (a setImmediate), and
 * everything a socket was given in that turn goes out in one writev. A turn answers many
 * requests; written one by one, each response can wake the client's process again (on loopback
 * the wakeup is done, and paid for, inside lb's write), and each forwarded request its backend's.
 * Waiting is only for up to 4 KiB on a socket with nothing queued in libuv; anything else is
 * written at once, after what waits. On a hooked socket, socket.write() and socket.end() are
 * wrapped to send what waits first, and detach() does the same, so bytes written through the
 * socket itself keep their order. socket.destroy() drops what waits (a write and a destroy in
 * the same turn send nothing; lb destroys only connections it abandons or cuts short).
 *
 * The handle is taken once the socket is connected: while it connects, node:net may replace it
 * (trying a host's addresses in turn, autoSelectFamily). TLS sockets, a socket paused before it
 * connected, one handed back with detach(), and a Node whose stream binding does not look as
 * expected use the plain stream path: the same API over socket.on('data'), pause/resume and
 * cork/write.
 */

interface WriteReq {
  handle: StreamHandle;
  oncomplete: (this: WriteReq, status: number) => void;
  buffer: unknown;
  io: SocketIO | null;
}

interface StreamHandle {
  onread: (this: StreamHandle, arrayBuffer: ArrayBuffer) => unknown;
  reading: boolean;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, data: Buffer): number;
  writeLatin1String(req: WriteReq, data: string): number;
  writev(req: WriteReq, chunks: unknown[], allBuffers: boolean): number;
  writeQueueSize: number;
  /** Read into this buffer from now on (node's CustomBufferJSListener); onread may return the next one. */
  useUserBuffer?(buf: Uint8Array): void;
}

interface StreamBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

/** node:net's own stream binding (the one `process.binding` still exposes), or null. */
function loadBinding(): StreamBinding | null {
  try {
    const b = (process as unknown as { binding(name: string): Partial<StreamBinding> }).binding('stream_wrap');
    const ok =
      typeof b.WriteWrap === 'function' && b.streamBaseState instanceof Int32Array &&
      typeof b.kReadBytesOrError === 'number' && typeof b.kArrayBufferOffset === 'number' && typeof b.kLastWriteWasAsync === 'number';
    return ok ? (b as StreamBinding) : null;
  } catch {
    return null;
  }
}

const binding = loadBinding();
const state = binding?.streamBaseState ?? new Int32Array(8);
const READ = binding?.kReadBytesOrError ?? 0;
const OFFSET = binding?.kArrayBufferOffset ?? 0;
const ASYNC = binding?.kLastWriteWasAsync ?? 0;

/** The error node:net would report for a failed libuv call. */
function errnoError(code: unknown, syscall: string): NodeJS.ErrnoException {
  if (typeof code !== 'number' || code >= 0) return Object.assign(new Error(`${syscall} failed`), { syscall });
  const name = getSystemErrorName(code);
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${name}`);
  err.errno = code;
  err.code = name;
  err.syscall = syscall;
  return err;
}

interface SocketInternals {
  _handle: StreamHandle | null;
  /** Restarts the socket's inactivity timer (what node:net does on every read and write). */
  _unrefTimer(): void;
  timeout?: number;
}

/** What node:net does on every read and write: restart the socket's inactivity timer, if it has one. */
function activity(socket: net.Socket): void {
  const s = socket as unknown as SocketInternals;
  if (s.timeout) s._unrefTimer();
}

/**
 * A write request that libuv never saw. node's StreamBase tries the write first and attaches a
 * request object to a libuv write only for what the kernel did not take at once (then
 * kLastWriteWasAsync is 1); an object whose write completed synchronously is untouched and is
 * kept here for the next write. Never one that was queued: libuv owns that until oncomplete.
 */
let spare: WriteReq | null = null;

/** Size of a read buffer (node allocates the same for every read otherwise). */
const READ_BUFFER = 64 * 1024;
/** Below this much room left after kept bytes, a socket's next read goes to a fresh buffer instead. */
const MIN_READ = 16 * 1024;
/** The one read buffer of every socket in `shared` mode, made on first use. */
let sharedBuffer: Buffer | null = null;

/**
 * Writes that kept a reference to their bytes, on any socket: queued by libuv (the kernel did
 * not take it all at once) or handed to net.Socket's stream. A socket that reads into its own
 * buffer compares readings of this around each delivery: if it moved, a chunk of that buffer
 * may still be in use, and the next read goes to a fresh one.
 */
let retained = 0;

const ignore = (): void => {};

/**
 * Direct writes of up to this many bytes a socket (Buffers copied) wait for the end of the event
 * loop's I/O phase; a larger one goes out at once, after what that socket has waiting.
 */
const DEFER_MAX = 4096;
/** Sockets with writes waiting, in the order they first wrote; flushed by one setImmediate. */
let toFlush: SocketIO[] = [];
let spareFlush: SocketIO[] = [];
let flushScheduled = false;

/**
 * Hand every waiting write to the kernel: runs in the check phase, after all the I/O callbacks of
 * this turn of the event loop. A socket written to again meanwhile is queued for the next turn.
 */
function flushAll(): void {
  flushScheduled = false;
  const q = toFlush;
  toFlush = spareFlush;
  try {
    for (let i = 0; i < q.length; i++) {
      try {
        q[i].flush();
      } catch (err) {
        q[i].socket.destroy(err as Error); // never expected; one socket's failure must not keep the others' bytes
      }
    }
  } finally {
    q.length = 0;
    spareFlush = q;
  }
}

/** A direct write that libuv finished later: report a failure, or 'drain' once all is out. */
function afterWrite(this: WriteReq, status: number): void {
  const io = this.io;
  this.buffer = null;
  this.io = null;
  io?.written(status);
}

export class SocketIO {
  readonly socket: net.Socket;
  #onData: (chunk: Buffer) => void;
  /** The libuv handle when reads and writes go to it directly; null on the stream path. */
  #handle: StreamHandle | null = null;
  #original: StreamHandle['onread'] | null = null;
  #paused = false;
  /** Handed back (detach): never hooked again, even if still connecting. */
  #detached = false;
  /** A direct write returned false: 'drain' is owed once libuv's queue is empty. */
  #needDrain = false;
  /**
   * Writes waiting for the end of this turn of the event loop, as writev's (piece, encoding)
   * pairs, or null: none. Strings as given, Buffers as copies (a read buffer may be read into
   * again before then).
   */
  #waiting: unknown[] | null = null;
  #waitingBytes = 0;
  /** libuv's queue at the last inactivity timeout (see writeProgressed). */
  #queuedAtTimeout = 0;
  /**
   * Reads and writes so far, on either path. An owner that keeps its own inactivity clock (the
   * upstream connection) compares readings of this instead of having the socket's timer
   * restarted on each read and write (`refreshTimer = false`).
   */
  ticks = 0;
  /**
   * Restart the socket's inactivity timer on every direct read and write, as node:net does. Each
   * restart is a timer-list update and a call into C++ for libuv's clock.
   */
  refreshTimer = true;

  /** Where the next read lands (this socket's own buffer, what is left of it, or the shared one), or null: in a buffer node allocates. */
  #readBuffer: Buffer | null = null;
  /** The handle whose reads come to #onRead (kept after detach when it reads into #readBuffer). */
  #readHandle: StreamHandle | null = null;
  readonly #readMode: 'own' | 'shared' | undefined;

  /**
   * `onData` gets every chunk read, on either path.
   *
   * `readBuffer`: on the direct path, read into a buffer that is used again instead of one node
   * allocates for every read (64 KiB from malloc, then a zero-filled copy of what was read, then
   * free: ~5 % of a proxied request's CPU per side in `perf`). A chunk given to `onData` is then
   * a view of that buffer:
   *  - `own`: the socket's own 64 KiB. A chunk stays valid after onData returns only if a write
   *    through a SocketIO kept it (those are counted): the next read then goes after it, or to a
   *    fresh buffer when under 16 KiB is left, so a slow reader pins about what is queued.
   *  - `shared`: one buffer for every such socket (reads run one at a time). onData must copy
   *    anything it keeps, writes included; only for sockets whose bytes are parsed, not relayed.
   * After detach(), such a socket's reads are handed to the stream as copies (node cannot take
   * the buffer back).
   */
  constructor(socket: net.Socket, onData: (chunk: Buffer) => void, opts: { readBuffer?: 'own' | 'shared' } = {}) {
    this.socket = socket;
    this.#onData = onData;
    this.#readMode = opts.readBuffer;
    // Kept on the direct path too: it keeps the socket flowing, so its end of stream is emitted.
    socket.on('data', this.#onStreamData);
    if (binding === null || socket instanceof tls.TLSSocket) return;
    if (socket.connecting) socket.once('connect', () => this.#hook());
    else this.#hook();
  }

  /** Take over the connected socket's handle, unless the stream path is already in use. */
  #hook(): void {
    const handle = (this.socket as unknown as SocketInternals)._handle;
    if (
      handle === null || this.socket.destroyed || this.#paused || this.#detached || this.#original !== null ||
      typeof handle.onread !== 'function' || typeof handle.writev !== 'function' || typeof handle.readStop !== 'function'
    ) {
      return;
    }
    this.#handle = handle;
    this.#readHandle = handle;
    // Writes may be waiting for the end of the turn: whatever writes through the socket itself or
    // ends it (its owner, onClientError's answer, destroySoon) sends them first.
    const socket = this.socket;
    const flushingFirst = <F extends (...args: never[]) => unknown>(f: F): F =>
      ((...args: Parameters<F>) => {
        this.flush();
        return f.apply(socket, args);
      }) as F;
    socket.end = flushingFirst(socket.end);
    socket.write = flushingFirst(socket.write);
    this.#original = handle.onread;
    handle.onread = this.#onRead;
    if (this.#readMode !== undefined && typeof handle.useUserBuffer === 'function') {
      this.#readBuffer = this.#readMode === 'own' ? Buffer.allocUnsafeSlow(READ_BUFFER) : (sharedBuffer ??= Buffer.allocUnsafeSlow(READ_BUFFER));
      handle.useUserBuffer(this.#readBuffer);
    }
  }

  /** Reads and writes go to the handle (false on the stream path). */
  get direct(): boolean {
    return this.#handle !== null;
  }

  /** A write handed to net.Socket: activity, and its bytes kept (the stream may hold them). */
  #viaStream(): void {
    this.ticks++;
    retained++;
  }

  /** A write on the stream path went out (a slow reader taking a large body is activity, not silence). */
  #wrote = (): void => {
    this.ticks++;
  };

  /** A read on the stream path (node:net restarts its own timer for these). */
  #onStreamData = (chunk: Buffer): void => {
    this.ticks++;
    held(this.#onData, chunk);
  };

  /** A direct read or write happened. */
  #activity(): void {
    this.ticks++;
    if (this.refreshTimer) activity(this.socket);
  }

  /** Restart the socket's inactivity timer (for an owner with refreshTimer off, when it decides so). */
  restartTimer(): void {
    activity(this.socket);
  }

  /** Called as the handle's onread: data goes to onData; EOF and errors to node:net as before. */
  #onRead = (arrayBuffer: ArrayBuffer): unknown => {
    const n = state[READ];
    const socket = this.socket;
    const h = this.#readHandle!;
    if (n <= 0 || socket.destroyed) return this.#original!.call(h, arrayBuffer);
    const own = this.#readBuffer;
    if (this.#detached) return this.#handOver(h, own!, n); // only a socket reading into its own buffer still comes here
    this.#activity();
    if (own === null) {
      held(this.#onData, Buffer.from(arrayBuffer, state[OFFSET], n));
      return undefined;
    }
    const before = retained;
    held(this.#onData, own.subarray(0, n));
    if (retained === before || this.#readMode === 'shared') return undefined;
    // A write kept bytes of this read (queued): the next read must not overwrite them.
    this.#readBuffer = own.length - n >= MIN_READ ? own.subarray(n) : Buffer.allocUnsafeSlow(READ_BUFFER);
    return this.#readBuffer; // node reads into what onread returns from now on
  };

  /**
   * A read after detach() on a socket reading into its own buffer: what node's own read callback
   * does with a read (restart the timer, push a Buffer to the stream, stop reading when the stream
   * is full), with a copy, since the buffer is read into again.
   */
  #handOver(h: StreamHandle, own: Buffer, n: number): undefined {
    const socket = this.socket;
    activity(socket);
    const chunk = Buffer.allocUnsafe(n);
    own.copy(chunk, 0, 0, n);
    if (!socket.push(chunk) && !socket.destroyed) {
      h.reading = false;
      const err = h.readStop();
      if (err) socket.destroy(errnoError(err, 'read'));
    }
    return undefined;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Stop reading (backpressure) until resume(). */
  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    const h = this.#handle;
    if (h === null) return void this.socket.pause();
    if (h.reading && !this.socket.destroyed) {
      h.reading = false;
      const err = h.readStop();
      if (err) this.socket.destroy(errnoError(err, 'read'));
    }
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const h = this.#handle;
    if (h === null) return void this.socket.resume();
    if (!h.reading && !this.socket.destroyed && !this.socket.connecting) {
      h.reading = true;
      const err = h.readStart();
      if (err) this.socket.destroy(errnoError(err, 'read'));
    }
  }

  /**
   * Hand the socket back to plain stream reads (an upgraded connection's tunnel reads 'data').
   * A 'drain' still owed for a direct write is not emitted after this: lb detaches only idle
   * connections, and from here the socket's own Writable answers for 'drain'.
   */
  detach(): void {
    this.flush();
    this.#detached = true;
    this.socket.off('data', this.#onStreamData);
    // Not flowing until the new owner reads (as node:http leaves an upgraded socket): bytes and
    // a FIN that come before it listens wait in the stream instead of going to no listener.
    (this.socket as { readableFlowing: boolean | null }).readableFlowing = null;
    this.#onData = ignore; // the old owner is not kept alive by a handle that still calls #onRead
    this.resume();
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    // node has no way to take its own read buffer back: such a socket's reads keep coming to #onRead (#handOver).
    if (this.#readBuffer === null) h.onread = this.#original!;
  }

  /** A write returned false and its 'drain' has not come yet (direct or through net.Socket). */
  get needDrain(): boolean {
    return this.#needDrain || this.socket.writableNeedDrain;
  }

  /**
   * Bytes accepted but not yet handed to the kernel (an upper bound: a socket.write in progress
   * is counted by net.Socket and by libuv). The server's idle check only looks for changes.
   */
  get pending(): number {
    return this.socket.writableLength + (this.#handle?.writeQueueSize ?? 0) + this.#waitingBytes;
  }

  /**
   * Called on an inactivity timeout: is a queued direct write still going out? node:net holds
   * its 'timeout' back in that case for its own writes; a caller does the same for these.
   */
  writeProgressed(): boolean {
    const queued = this.#handle?.writeQueueSize ?? 0;
    const moved = queued > 0 && queued !== this.#queuedAtTimeout;
    this.#queuedAtTimeout = queued;
    return moved;
  }

  /**
   * The handle, when a direct write keeps the socket's byte order; null: use socket.write. Bytes
   * net.Socket still holds must go first; libuv itself keeps its queue in order.
   */
  #writable(): StreamHandle | null {
    const h = this.#handle;
    const s = this.socket;
    // The Writable's state is read directly: its public getters (writableLength, …) cost a call each, twice per request.
    const w = (s as unknown as { _writableState: { length: number; corked: number; ending: boolean } })._writableState;
    if (h === null || s.connecting || s.destroyed || w.ending || w.length !== 0 || w.corked !== 0) return null;
    return h;
  }

  /** Write `data` (a string is sent as latin1). False: wait for the socket's 'drain'. */
  write(data: Buffer | string): boolean {
    const h = this.#writable();
    if (h === null) {
      this.#viaStream();
      return this.socket.write(data, 'latin1', this.#wrote); // what waits goes first (the wrapper)
    }
    if (this.#canWait(h, data.length)) {
      this.#wait(data);
      this.ticks++; // counted as a write now; the flush is not counted again
      return true;
    }
    return this.#sendAfterWaiting(h, [data]);
  }

  /** Write several pieces at once (one writev). False: wait for the socket's 'drain'. */
  writev(parts: readonly (Buffer | string)[]): boolean {
    if (parts.length === 1) return this.write(parts[0]);
    const h = this.#writable();
    if (h === null) {
      this.#viaStream();
      return this.#writeStream(parts, 1);
    }
    let size = 0;
    for (let i = 0; i < parts.length; i++) size += parts[i].length;
    if (this.#canWait(h, size)) {
      for (let i = 0; i < parts.length; i++) this.#wait(parts[i]);
      this.ticks++;
      return true;
    }
    return this.#sendAfterWaiting(h, parts);
  }

  /** `parts` (or every `step`-th element of it) through the stream, in one corked batch; what waits goes first (socket.write's wrapper). */
  #writeStream(parts: readonly unknown[], step: 1 | 2): boolean {
    const s = this.socket;
    s.cork();
    let ok = true;
    for (let i = 0; i < parts.length; i += step) ok = s.write(parts[i] as Buffer | string, 'latin1', i + step >= parts.length ? this.#wrote : undefined);
    s.uncork();
    return ok;
  }

  /**
   * Hold a small write on an idle socket until the end of this turn of the event loop (flushAll),
   * so what lb sends in one turn goes out together: one writev a socket, and a peer woken once
   * for the turn, not once for each write (a wakeup on another core costs more than the write).
   * Only when #canWait: not when large, libuv still writes an earlier one, or 'drain' is owed.
   */
  #wait(data: Buffer | string): void {
    let list = this.#waiting;
    if (list === null) {
      list = this.#waiting = [];
      toFlush.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
    if (typeof data === 'string') list.push(data, 'latin1');
    else list.push(Buffer.from(data), 'buffer'); // a copy: small (pooled), and the caller may reuse its buffer
    this.#waitingBytes += data.length;
  }

  /** May `size` more bytes wait: within DEFER_MAX, nothing queued in libuv, no 'drain' owed (then write() must report backpressure now). */
  #canWait(h: StreamHandle, size: number): boolean {
    return this.#waitingBytes + size <= DEFER_MAX && h.writeQueueSize === 0 && !this.#needDrain;
  }

  /** `parts` must go now: what is waiting (if anything) goes first, in the same write. */
  #sendAfterWaiting(h: StreamHandle, parts: readonly (Buffer | string)[]): boolean {
    const chunks = this.#waiting ?? [];
    this.#waiting = null;
    this.#waitingBytes = 0;
    for (let i = 0; i < parts.length; i++) chunks.push(parts[i], typeof parts[i] === 'string' ? 'latin1' : 'buffer');
    return this.#send(h, chunks);
  }

  /**
   * Hand what waits to the kernel now: flushAll does at the end of the turn; socket.write(),
   * socket.end() and detach() before they go on. On a socket destroyed meanwhile it is dropped
   * (before this batching, bytes written just before a destroy had already reached the kernel).
   */
  flush(): void {
    const chunks = this.#waiting;
    if (chunks === null) return;
    this.#waiting = null;
    this.#waitingBytes = 0;
    if (this.socket.destroyed) return;
    const h = this.#writable();
    if (h !== null) return void this.#send(h, chunks, false);
    // The stream holds bytes or is corked (someone corked the socket): these go through it, in order.
    this.#viaStream();
    this.#writeStream(chunks, 2);
  }

  /** One direct write of writev's (piece, encoding) pairs; `tick`: count it in ticks (the flush's were counted). */
  #send(h: StreamHandle, chunks: unknown[], tick = true): boolean {
    const req = this.#request(h);
    if (chunks.length > 2) return this.#dispatched(req, h.writev(req, chunks, false), chunks, tick);
    const data = chunks[0] as Buffer | string;
    return this.#dispatched(req, typeof data === 'string' ? h.writeLatin1String(req, data) : h.writeBuffer(req, data), data, tick);
  }

  #request(h: StreamHandle): WriteReq {
    // A request object that went unused (its write finished at once) serves again: `new
    // WriteWrap()` is a call into C++, twice per proxied request otherwise.
    const req = spare ?? new binding!.WriteWrap();
    spare = null;
    req.handle = h;
    req.oncomplete = afterWrite;
    req.buffer = null;
    req.io = null;
    return req;
  }

  #dispatched(req: WriteReq, err: unknown, keep: unknown, tick = true): boolean {
    const s = this.socket;
    if (err !== 0) {
      s.destroy(errnoError(err, 'write'));
      return false;
    }
    if (tick) this.#activity();
    else if (this.refreshTimer) activity(s);
    if (state[ASYNC] === 0) {
      spare = req;
      return true;
    }
    // The kernel took part of it: libuv writes the rest when it can; its bytes must stay alive.
    retained++;
    req.buffer = keep;
    req.io = this;
    if (req.handle.writeQueueSize < s.writableHighWaterMark) return true;
    this.#needDrain = true;
    return false;
  }

  /** A queued direct write completed (status < 0: it failed). */
  written(status: number): void {
    const s = this.socket;
    if (s.destroyed) return;
    if (status < 0) return void s.destroy(errnoError(status, 'write'));
    this.#activity();
    // After detach() the socket's own Writable decides when to emit 'drain'.
    const h = this.#handle;
    if (!this.#needDrain || h === null || h.writeQueueSize !== 0 || s.writableNeedDrain || s.writableEnded) return;
    this.#needDrain = false;
    s.emit('drain');
  }
}
