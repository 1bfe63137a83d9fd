import { BASE64URL_ALPHABET as ALPHABET } from '../util/base64url.js';

/**
 * Live sessions per backend: distinct session ids whose affinity is still valid. Each entry
 * expires when its cookie would: the count reaching zero means no client can come back with a
 * valid pin, which is what "drained" promises.
 *
 * Layout, chosen for the garbage collector and for floods of cookieless requests (a new session
 * each): an open-addressing hash table in typed arrays, off the JS heap. A session id is 12 random
 * bytes (16 base64url characters), stored as three 32-bit words; beside it, its expiry in whole
 * seconds since the table's epoch (rounded up, so an entry may outlive its cookie by under a
 * second) and its backend's index. No string, record or Map slot per session: a full major GC
 * does not visit a million sessions. A slot is 18 bytes; the table doubles when half full and
 * halves, on sweep, when under an eighth full. The earlier layout, a Map of id strings per
 * backend, cost ~100 bytes of RSS per session and evicted by scanning the Map's deleted slots
 * (bench/RESULTS.md).
 */
const HELD = 0x7fffffff; // an expiry that never comes: the session is held by a WebSocket
const EMPTY = 0; // `who` of a free slot (backend indices start at 1)
const MIN_SLOTS = 1024;
/** Entries looked at when the table is full; the one expiring first is forgotten (Redis-style sampled LRU). */
const EVICTION_SAMPLE = 8;
/**
 * Slots looked at for that sample at most: with the table full of sessions held by WebSockets
 * (never evicted) nothing is forgotten and the table goes past its cap, instead of every new
 * session scanning the whole table.
 */
const EVICTION_SCAN = 1024;
/** Slots a partial sweep looks at, at least: a table of the initial size is swept whole. */
const SWEEP_MIN = 1024;

const SEXTET = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) SEXTET[ALPHABET.charCodeAt(i)] = i;

/** Four base64url characters at `at` as 24 bits; -1 if any is outside the alphabet. */
function group(id: string, at: number): number {
  let v = 0;
  for (let i = at; i < at + 4; i++) {
    const c = id.charCodeAt(i);
    const x = c < 128 ? SEXTET[c] : -1;
    if (x < 0) return -1;
    v = (v << 6) | x;
  }
  return v;
}

/** Where the id's probe run starts (before masking): its three words mixed, the high bits kept. */
function home(k0: number, k1: number, k2: number): number {
  return Math.imul(k0 ^ Math.imul(k1, 0x9e3779b1) ^ Math.imul(k2, 0x85ebca77), 0xc2b2ae3d) >>> 8;
}

/**
 * The id last decoded, for #find (one lookup at a time: nothing between decoding and using it
 * yields). Whatever may run between a decode and an insert (eviction, growth) does not use these,
 * and inserts take the words as arguments.
 */
let K0 = 0;
let K1 = 0;
let K2 = 0;

/** Decode a 16-character base64url id into K0..K2; false for anything else (never stored). */
function decode(id: string): boolean {
  if (id.length !== 16) return false;
  const g0 = group(id, 0);
  const g1 = group(id, 4);
  const g2 = group(id, 8);
  const g3 = group(id, 12);
  if ((g0 | g1 | g2 | g3) < 0) return false;
  K0 = g0 | (g1 << 24);
  K1 = (g1 >>> 8) | (g2 << 16);
  K2 = (g2 >>> 16) | (g3 << 8);
  return true;
}

/** The slot a session id's probe run starts at in a table of `slots` (tests place ids with it). */
export function homeSlot(id: string, slots: number): number {
  if (!decode(id)) throw new RangeError('not a session id');
  return home(K0, K1, K2) & (slots - 1);
}

export class SessionTable {
  #mask: number;
  /** Three words of session id per slot (a slot is 12 + 4 + 2 = 18 bytes across the three arrays). */
  #keys: Int32Array;
  /**
   * Expiry per slot, seconds since #epoch; HELD for sessions an open WebSocket keeps, and for
   * free slots, so that a sweep's one test per slot (expired?) is almost never true. Testing
   * `who` first was a branch taken at random at half load: a pass at the cap went from 12 to 9 ns
   * a slot.
   */
  #exp: Int32Array;
  /** Backend index per slot (1-based); EMPTY for a free slot. */
  #who: Uint16Array;
  #size = 0;
  /** Backend id → index, index → id, index → live entries. */
  readonly #index = new Map<string, number>();
  readonly #ids: Array<string | undefined> = [undefined];
  readonly #counts: number[] = [0];
  /** Indices forgetBackend gave back. */
  readonly #free: number[] = [];
  /** Session id → number of holders (open WebSockets); such entries have expiry HELD. */
  readonly #holds = new Map<string, { n: number }>();
  readonly #now: () => number;
  readonly #epoch: number;
  /** Where the next eviction sample starts (moves on, so every region gets its turn). */
  #cursor = 0;
  /** Where the next partial sweep goes on from (0: a new pass over the table). */
  #sweepAt = 0;
  /**
   * Bumped whenever an entry may have left the table or lowered its expiry (removal, eviction,
   * sweep, re-pin, a hold released, a backend index taken over). Between two equal readings,
   * every entry touched is still there with at least the expiry it was given, so repeating
   * that touch would change nothing (CookieAffinity skips it for a returning client).
   */
  #generation = 0;

  /**
   * A flood of cookieless requests creates a session each; past this many entries the entry
   * expiring first among a sample is forgotten (its count drops early, its cookie keeps working):
   * memory stays bounded (2^21 slots, 38 MB, at the default cap).
   */
  readonly #cap: number;
  readonly #minSlots: number;

  /** `slots`: the initial size, a power of two (tests start small to exercise wrap-around). */
  constructor(now: () => number, cap = 1_000_000, slots = MIN_SLOTS) {
    if (slots < 2 || (slots & (slots - 1)) !== 0) throw new RangeError('slots must be a power of two');
    this.#now = now;
    this.#epoch = now();
    this.#cap = cap;
    this.#minSlots = slots;
    this.#mask = slots - 1;
    this.#keys = new Int32Array(slots * 3);
    this.#exp = new Int32Array(slots).fill(HELD);
    this.#who = new Uint16Array(slots);
  }

  #sec(ms: number): number {
    if (ms === Infinity) return HELD;
    return Math.max(-HELD, Math.min(HELD - 1, Math.ceil((ms - this.#epoch) / 1000)));
  }

  #nowSec(): number {
    return (this.#now() - this.#epoch) / 1000;
  }

  /** The id stored at `slot`, as 16 base64url characters. */
  #encode(slot: number): string {
    const k0 = this.#keys[slot * 3];
    const k1 = this.#keys[slot * 3 + 1];
    const k2 = this.#keys[slot * 3 + 2];
    const groups = [k0 & 0xffffff, ((k0 >>> 24) | (k1 << 8)) & 0xffffff, ((k1 >>> 16) | (k2 << 16)) & 0xffffff, (k2 >>> 8) & 0xffffff];
    let s = '';
    for (const x of groups) s += ALPHABET[x >>> 18] + ALPHABET[(x >>> 12) & 63] + ALPHABET[(x >>> 6) & 63] + ALPHABET[x & 63];
    return s;
  }

  /** Slot holding the decoded id, or -1. */
  #find(): number {
    const keys = this.#keys;
    const mask = this.#mask;
    for (let i = home(K0, K1, K2) & mask; ; i = (i + 1) & mask) {
      if (this.#who[i] === EMPTY) return -1;
      if (keys[i * 3] === K0 && keys[i * 3 + 1] === K1 && keys[i * 3 + 2] === K2) return i;
    }
  }

  /**
   * The backend's index, assigned on its first session. Indices freed by forgetBackend are reused
   * first. Once all 65,535 are taken (backends removed without forgetBackend, over a long life),
   * one whose backend has no entries left is taken over; -1 only if 65,535 backends all hold
   * sessions at once (that session is then not counted).
   */
  #backendIndex(backend: string): number {
    let idx = this.#index.get(backend);
    if (idx !== undefined) return idx;
    idx = this.#free.pop() ?? (this.#ids.length <= 0xffff ? this.#ids.length : this.#counts.indexOf(0, 1));
    if (idx === -1) return -1;
    const previous = this.#ids[idx];
    if (previous !== undefined) {
      this.#index.delete(previous);
      this.#generation++;
    }
    this.#ids[idx] = backend;
    this.#counts[idx] = 0;
    this.#index.set(backend, idx);
    return idx;
  }

  /** Put the id (k0, k1, k2) in a free slot (it is not in the table; there is room). */
  #insert(k0: number, k1: number, k2: number, who: number, exp: number): void {
    const mask = this.#mask;
    let i = home(k0, k1, k2) & mask;
    while (this.#who[i] !== EMPTY) i = (i + 1) & mask;
    this.#keys[i * 3] = k0;
    this.#keys[i * 3 + 1] = k1;
    this.#keys[i * 3 + 2] = k2;
    this.#exp[i] = exp;
    this.#who[i] = who;
    this.#counts[who]++;
    this.#size++;
  }

  /** Free `slot`, shifting later entries of its probe run back (linear probing without tombstones). */
  #remove(slot: number): void {
    const keys = this.#keys;
    const exp = this.#exp;
    const who = this.#who;
    const mask = this.#mask;
    this.#counts[who[slot]]--;
    this.#size--;
    this.#generation++;
    let hole = slot;
    for (let j = (hole + 1) & mask; who[j] !== EMPTY; j = (j + 1) & mask) {
      const h = home(keys[j * 3], keys[j * 3 + 1], keys[j * 3 + 2]) & mask;
      // The entry at j may fill the hole only if its home is not cyclically within (hole, j].
      const stays = hole <= j ? h > hole && h <= j : h > hole || h <= j;
      if (stays) continue;
      keys[hole * 3] = keys[j * 3];
      keys[hole * 3 + 1] = keys[j * 3 + 1];
      keys[hole * 3 + 2] = keys[j * 3 + 2];
      exp[hole] = exp[j];
      who[hole] = who[j];
      hole = j;
    }
    who[hole] = EMPTY;
    exp[hole] = HELD;
  }

  /**
   * Double the slots once the table is half full. Eviction keeps entries at the cap, so slots
   * stop at twice the cap; only sessions held by WebSockets (never evicted) can go past it.
   */
  #grow(): void {
    const slots = this.#mask + 1;
    if (this.#size * 2 >= slots) this.#rehash(slots * 2);
  }

  /** Move every entry into a table of `slots` slots. */
  #rehash(slots: number): void {
    const keys = this.#keys;
    const exp = this.#exp;
    const who = this.#who;
    const old = this.#mask + 1;
    this.#mask = slots - 1;
    this.#keys = new Int32Array(slots * 3);
    this.#exp = new Int32Array(slots).fill(HELD);
    this.#who = new Uint16Array(slots);
    this.#size = 0;
    this.#cursor = 0;
    this.#sweepAt = 0;
    for (let i = 0; i < this.#counts.length; i++) this.#counts[i] = 0;
    for (let i = 0; i < old; i++) {
      if (who[i] !== EMPTY) this.#insert(keys[i * 3], keys[i * 3 + 1], keys[i * 3 + 2], who[i], exp[i]);
    }
  }

  /** Forget the entry expiring first among a few, skipping held ones. */
  #evictOne(): void {
    const who = this.#who;
    const exp = this.#exp;
    const mask = this.#mask;
    let victim = -1;
    let seen = 0;
    let i = this.#cursor;
    for (let n = 0; n <= mask && n < EVICTION_SCAN && seen < EVICTION_SAMPLE; n++, i = (i + 1) & mask) {
      if (who[i] === EMPTY || exp[i] === HELD) continue;
      seen++;
      if (victim === -1 || exp[i] < exp[victim]) victim = i;
    }
    this.#cursor = i;
    if (victim !== -1) this.#remove(victim);
  }

  /**
   * Record that the session is live on `backend` until `expiresAt` (ms). A session the table has
   * on another backend (re-pinned) moves. Ids other than 16 base64url characters are ignored:
   * lb mints every session id. False when nothing was stored.
   */
  touch(sessionId: string, backend: string, expiresAt: number): boolean {
    if (!decode(sessionId)) return false;
    const who = this.#backendIndex(backend);
    const e = this.#sec(expiresAt);
    const slot = this.#find();
    if (slot !== -1) {
      if (this.#who[slot] === who) {
        if (this.#exp[slot] !== HELD && e > this.#exp[slot]) this.#exp[slot] = e;
        return true;
      }
      // Re-pinned: it leaves its old backend (and any hold there).
      this.#holds.delete(sessionId);
      this.#remove(slot);
    }
    if (who === -1) return false; // no index left for this backend: not counted anywhere
    const k0 = K0;
    const k1 = K1;
    const k2 = K2;
    if (this.#size >= this.#cap) this.#evictOne();
    this.#grow();
    this.#insert(k0, k1, k2, who, e);
    return true;
  }

  /** Is this session still live on this backend (e.g. held by an open WebSocket)? */
  isLive(sessionId: string, backend: string): boolean {
    if (!decode(sessionId)) return false;
    const slot = this.#find();
    return slot !== -1 && this.#ids[this.#who[slot]] === backend && this.#exp[slot] > this.#nowSec();
  }

  /**
   * Keep a session alive while something long-lived (a WebSocket) uses it; the undo lets it
   * idle out from then on (HAProxy #1480: a WebSocket user must not lose the session).
   */
  hold(sessionId: string, backend: string, idleMs: number): () => void {
    // Not an id lb minted, or no backend index left: nothing kept, nothing to release.
    if (!this.touch(sessionId, backend, Infinity)) return () => undefined;
    // The release belongs to this record of holders: a re-pin or a forgotten backend drops the
    // record, and a hold taken after that (the session back on this backend) starts a new one
    // that an older WebSocket's release must not end.
    let holders = this.#holds.get(sessionId);
    if (holders === undefined) this.#holds.set(sessionId, (holders = { n: 0 }));
    holders.n++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.#holds.get(sessionId) !== holders || !decode(sessionId)) return;
      const slot = this.#find();
      if (slot === -1 || this.#ids[this.#who[slot]] !== backend) return;
      if (--holders.n > 0) return;
      this.#holds.delete(sessionId);
      this.#exp[slot] = this.#sec(this.#now() + idleMs);
      this.#generation++;
    };
  }

  /**
   * Sessions held by open WebSockets: [session id, backend]. From the holds, not a scan of the
   * table: a cluster worker asks four times a second, and a table at its cap has 2^21 slots.
   */
  held(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const id of this.#holds.keys()) {
      if (!decode(id)) continue;
      const slot = this.#find();
      if (slot !== -1 && this.#exp[slot] === HELD) out.push([id, this.#ids[this.#who[slot]]!]);
    }
    return out;
  }

  count(backend: string): number {
    const idx = this.#index.get(backend);
    return idx === undefined ? 0 : this.#counts[idx];
  }

  get size(): number {
    return this.#size;
  }

  /** See #generation: equal readings mean no entry left the table or lost expiry in between. */
  get generation(): number {
    return this.#generation;
  }

  /** Slots allocated (18 bytes each): the table's memory, which grows and shrinks with it. */
  get slots(): number {
    return this.#mask + 1;
  }

  /** Drop a backend's entries and free its index. O(slots); an admin action, not per request. */
  forgetBackend(backend: string): void {
    const idx = this.#index.get(backend);
    if (idx === undefined) return;
    this.#dropWhere((i) => {
      if (this.#who[i] !== idx) return false;
      if (this.#exp[i] === HELD) this.#holds.delete(this.#encode(i));
      return true;
    });
    this.#index.delete(backend);
    this.#ids[idx] = undefined;
    this.#free.push(idx);
  }

  /**
   * Drop expired entries from `part` of the table (at least SWEEP_MIN slots), going on from
   * where the last call stopped; `part` 1 sweeps the whole table now. Run on timers, not per
   * request, in parts so that no call stalls the event loop: a whole sweep of a table at its
   * cap (2^21 slots) took ~25 ms, a part of a twentieth ~1.2–1.9 ms. A table of up to SWEEP_MIN
   * slots is swept whole. When a call completes a pass over the table, the table shrinks if a
   * flood has expired (to a quarter full at most), so its memory is returned: that call is one
   * rehash, 7–32 ms at the cap (once per flood that expires). True when a pass was completed.
   */
  sweep(part = 1): boolean {
    const now = this.#nowSec();
    // A whole sweep is one call with no budget from the first slot. Otherwise every look counts,
    // a second look after a removal included (a later entry may have shifted into the freed
    // slot): the work per call is bounded, not just the slots passed.
    const whole = !(part < 1) || this.#mask < SWEEP_MIN;
    const budget = whole ? Infinity : Math.max(SWEEP_MIN, Math.ceil((this.#mask + 1) * part));
    let i = whole ? 0 : this.#sweepAt;
    // In locals: #remove shifts entries within these arrays, never replaces them.
    const who = this.#who;
    const exp = this.#exp;
    const mask = this.#mask;
    for (let n = 0; n < budget; n++) {
      if (exp[i] <= now && who[i] !== EMPTY) this.#remove(i);
      else if (++i > mask) break;
    }
    if (i <= mask) {
      this.#sweepAt = i;
      return false;
    }
    this.#sweepAt = 0;
    let slots = this.#mask + 1;
    while (slots > this.#minSlots && this.#size * 8 < slots) slots /= 2;
    if (slots < this.#mask + 1) this.#rehash(slots);
    return true;
  }

  /** Remove every entry `drop` picks. A slot is looked at again after a removal (a later entry may have shifted into it). */
  #dropWhere(drop: (slot: number) => boolean): void {
    for (let i = 0; i <= this.#mask; ) {
      if (this.#who[i] !== EMPTY && drop(i)) this.#remove(i);
      else i++;
    }
  }
}
