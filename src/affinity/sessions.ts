import { BASE64URL_ALPHABET as ALPHABET } from '../util/base64url.js';

/**
 * Live sessions per backend: distinct session ids whose affinity is still valid. Each entry
 * expires when its cookie would: the count reaching zero means no client can come back with a
 * valid pin, which is what "drained" promises.
 *
 * Layout, chosen for the garbage collector and for floods of cookieless requests (a new session
 * each): an open-addressing hash table in one typed array, off the JS heap. No string, record or
 * Map slot per session: a full major GC does not visit a million sessions. A slot is four 32-bit
 * words side by side, 16 bytes, four to a cache line: the session's key, its expiry in whole
 * seconds since the table's epoch (rounded up, so an entry may outlive its cookie by under a
 * second; stored counting down, see #slot) and its backend's index. A lookup or an insert touches
 * one cache line, where the three arrays of the earlier layout touched three: in a table at its cap
 * (2^21 slots, 32 MiB) each is a likely cache miss (what that bought: bench/RESULTS.md).
 *
 * The key is a 64-bit fold of the id's 96 bits: a session id is 12 random bytes (16 base64url
 * characters), three words, and the third is mixed into the other two (multiplied by odd
 * constants, so ids that differ in one word only never share a key). Two live sessions share a
 * key with odds of about n / 2^64 per lookup (5·10^-14 at the cap), and ids are minted by lb and
 * reach it only in signed cookies or from other lb processes, so a client cannot choose one.
 * The table doubles when half full and halves, on sweep, when under an eighth full. A resize does
 * not move every entry at once (45 ms going to 2^21 slots, a stall of every request in flight):
 * the new array takes the inserts, and the old one is emptied into it a few slots at a time, by
 * each new session and each partial sweep (see #resize). The earlier layouts: a Map of id
 * strings per backend (~100 bytes of RSS per session; eviction scanned the Map's deleted slots),
 * then three arrays (id words, expiries, backends: 18 bytes a slot, three cache misses an
 * insert), then this one array moved whole on every resize.
 */
/** The expiry word of second 0 after the table's epoch (see #slot); a held session's word is 0. */
const HELD = 0x7fffffff;
/** How far before its creation a table's epoch lies: expiries down to a year back keep their order. */
const EPOCH_BACK_MS = 365 * 86_400_000;
const EMPTY = 0; // `who` of a free slot (backend indices start at 1)
/** `who` of an old array's slot whose entry has moved on: probe runs go on through it. */
const MOVED = -1;
/**
 * Slots of the old array moved per new session while the table resizes, at least. A growth
 * starts when the new array (twice the old) is a quarter full: at 4 slots a session the old one
 * is emptied by the time half of the quarter left before the next growth has come in. A shrink
 * moves out of an array up to 2^11 times the new one: its step is scaled to the same margin
 * (see #resize), so the move always ends before the next growth would have to finish it.
 */
const MOVE_STEP = 4;
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

/** Where a key's probe run starts (before masking): its two words mixed, the high bits kept. */
function home(k0: number, k1: number): number {
  return Math.imul(k0 ^ Math.imul(k1, 0x9e3779b1), 0xc2b2ae3d) >>> 8;
}

/** Entries of SessionTable's queue of added sessions, per session: id, key (two words), backend, expiry. */
const PENDING_STRIDE = 5;

/** Words of a slot: the key's two, the expiry, the backend index. */
const STRIDE = 4;
const EXP = 2;
const WHO = 3;

/**
 * The key of the id last decoded, for #find (one lookup at a time: nothing between decoding and
 * using it yields). Whatever may run between a decode and an insert (eviction, growth) does not
 * use these, and inserts take the words as arguments.
 */
let K0 = 0;
let K1 = 0;

/**
 * Decode a 16-character base64url id into its key K0, K1; false for anything else (never stored).
 * The id's third word is mixed into both by multiplying with odd constants: ids that differ only
 * there still differ in both words of the key.
 */
function decode(id: string): boolean {
  if (id.length !== 16) return false;
  const g0 = group(id, 0);
  const g1 = group(id, 4);
  const g2 = group(id, 8);
  const g3 = group(id, 12);
  if ((g0 | g1 | g2 | g3) < 0) return false;
  fold(g0, g1, g2, g3);
  return true;
}

/** The key K0, K1 of an id's 96 bits, given as four 24-bit groups (four characters, or three bytes, each). */
function fold(g0: number, g1: number, g2: number, g3: number): void {
  const w2 = (g2 >>> 16) | (g3 << 8);
  K0 = (g0 | (g1 << 24)) ^ Math.imul(w2, 0x85ebca77);
  K1 = ((g1 >>> 8) | (g2 << 16)) ^ Math.imul(w2, 0x27d4eb2f);
}

/**
 * The key of the id whose 12 bytes are `b[at..at+12]`, into K0, K1: what decode gives for their 16
 * base64url characters (each four characters are three bytes), without the characters. A session
 * lb has just minted is counted from its bytes, not from the string made of them.
 */
function decodeBytes(b: Uint8Array, at: number): void {
  fold(triple(b, at), triple(b, at + 3), triple(b, at + 6), triple(b, at + 9));
}

/** Three bytes at `at` as 24 bits, big-endian: the four base64url characters they encode, as group() reads them. */
function triple(b: Uint8Array, at: number): number {
  return (b[at] << 16) | (b[at + 1] << 8) | b[at + 2];
}

/** The slot a session id's probe run starts at in a table of `slots` (tests place ids with it). */
export function homeSlot(id: string, slots: number): number {
  if (!decode(id)) throw new RangeError('not a session id');
  return home(K0, K1) & (slots - 1);
}

export class SessionTable {
  #mask: number;
  /**
   * STRIDE words per slot: key (two words), expiry, backend index. The expiry word holds what #sec
   * gives: HELD minus the expiry in seconds since #epoch (seconds 0 to HELD-1, words HELD down to
   * 1; an expiry before the epoch, a year before the table was made, counts as second 0), or 0 for
   * a session an open WebSocket keeps: a later expiry is a smaller word. A zeroed slot (EMPTY
   * backend) then reads as never expiring, so a sweep's one test per slot (expired?) is almost
   * never true, and a new array needs no pass to mark its free slots (at 2^21 slots, a stall of its
   * own).
   */
  #slot: Int32Array;
  /**
   * While resizing, the previous array: its entries not moved yet (a moved one's `who` is MOVED),
   * looked up after #slot. Moved in slot order from #moved (a word offset), and on access.
   */
  #old: Int32Array | null = null;
  #oldMask = 0;
  #moved = 0;
  /** Slots of the old array moved per new session (MOVE_STEP, or more after a shrink). */
  #step = MOVE_STEP;
  /** Live entries, in both arrays while resizing. */
  #size = 0;
  /** Backend id → index, index → id, index → live entries. */
  readonly #index = new Map<string, number>();
  readonly #ids: Array<string | undefined> = [undefined];
  readonly #counts: number[] = [0];
  /** Indices forgetBackend gave back. */
  readonly #free: number[] = [];
  /** Session id → number of holders (open WebSockets); such entries have expiry word 0. */
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
   * memory stays bounded (2^21 slots, 32 MiB, at the default cap).
   */
  readonly #cap: number;
  readonly #minSlots: number;

  /** `slots`: the initial size, a power of two (tests start small to exercise wrap-around). */
  constructor(now: () => number, cap = 1_000_000, slots = MIN_SLOTS) {
    if (slots < 2 || (slots & (slots - 1)) !== 0) throw new RangeError('slots must be a power of two');
    this.#now = now;
    this.#epoch = now() - EPOCH_BACK_MS;
    this.#cap = cap;
    this.#minSlots = slots;
    this.#mask = slots - 1;
    this.#slot = SessionTable.#alloc(slots);
  }

  /** `slots` free slots (zeroed: EMPTY backend). */
  static #alloc(slots: number): Int32Array {
    return new Int32Array(slots * STRIDE);
  }

  /** The expiry word for an expiry at `ms` (see #slot): smaller for later; 0 for never (held). */
  #sec(ms: number): number {
    if (ms === Infinity) return 0;
    const sec = Math.ceil((ms - this.#epoch) / 1000);
    return HELD - (sec > 0 ? Math.min(HELD - 1, sec) : 0); // NaN (never passed) as long expired, not as held
  }

  /** Expiry words from this one up are expired now. */
  #expiredFrom(): number {
    return HELD - (this.#now() - this.#epoch) / 1000;
  }

  /**
   * Offset of the slot holding the decoded key; if it is not there, ~offset (negative) of the free
   * slot its probe run ends on, where an insert made right away would put it. While resizing, an
   * entry still in the old array is moved into that free slot first: offsets are always in #slot.
   */
  #find(): number {
    const s = this.#slot;
    const mask = this.#mask;
    const h = home(K0, K1);
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const o = i * STRIDE;
      if (s[o + WHO] === EMPTY) return this.#old === null ? ~o : this.#findOld(h, o);
      if (s[o] === K0 && s[o + 1] === K1) return o;
    }
  }

  /** #find in the old array, for a key not in #slot; `free` is where its probe run there ends. */
  #findOld(h: number, free: number): number {
    const old = this.#old!;
    const mask = this.#oldMask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const o = i * STRIDE;
      const who = old[o + WHO];
      if (who === EMPTY) return ~free;
      if (who !== MOVED && old[o] === K0 && old[o + 1] === K1) {
        this.#write(free, K0, K1, who, old[o + EXP]);
        old[o + WHO] = MOVED;
        return free;
      }
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

  /** The free slot ending the probe run of the key (k0, k1), which is not in #slot (there is room). */
  #freeSlot(k0: number, k1: number): number {
    const s = this.#slot;
    const mask = this.#mask;
    let o = (home(k0, k1) & mask) * STRIDE;
    while (s[o + WHO] !== EMPTY) o = (o + STRIDE) & (mask * STRIDE + STRIDE - 1);
    return o;
  }

  /** Fill the free slot at offset `o` with a new entry. */
  #put(o: number, k0: number, k1: number, who: number, exp: number): void {
    this.#write(o, k0, k1, who, exp);
    this.#counts[who]++;
    this.#size++;
  }

  /** An entry of backend `who` left the table (removed, expired in a move, or forgotten): the counts follow. */
  #left(who: number): void {
    this.#counts[who]--;
    this.#size--;
    this.#generation++;
  }

  /** Fill the free slot at offset `o` (an entry new to the table, or one moved from the old array). */
  #write(o: number, k0: number, k1: number, who: number, exp: number): void {
    const s = this.#slot;
    s[o] = k0;
    s[o + 1] = k1;
    s[o + EXP] = exp;
    s[o + WHO] = who;
  }

  /** Free the slot at offset `at`, shifting later entries of its probe run back (linear probing without tombstones). */
  #remove(at: number): void {
    const s = this.#slot;
    const mask = this.#mask;
    const wrap = mask * STRIDE + STRIDE - 1;
    this.#left(s[at + WHO]);
    let hole = at;
    for (let j = (hole + STRIDE) & wrap; s[j + WHO] !== EMPTY; j = (j + STRIDE) & wrap) {
      const h = (home(s[j], s[j + 1]) & mask) * STRIDE;
      // The entry at j may fill the hole only if its home is not cyclically within (hole, j].
      const stays = hole <= j ? h > hole && h <= j : h > hole || h <= j;
      if (stays) continue;
      s[hole] = s[j];
      s[hole + 1] = s[j + 1];
      s[hole + EXP] = s[j + EXP];
      s[hole + WHO] = s[j + WHO];
      hole = j;
    }
    s[hole + WHO] = EMPTY;
    s[hole + EXP] = 0; // a free slot reads as never expiring: a sweep's test stays false
  }

  /**
   * Double the slots once the table is half full (#size counts both arrays while resizing, so
   * #slot is at most that full). Eviction keeps entries at the cap, so slots stop at twice the
   * cap; only sessions held by WebSockets (never evicted) can go past it.
   */
  #grow(): void {
    const slots = this.#mask + 1;
    if (this.#size * 2 >= slots) this.#resize(slots * 2);
  }

  /**
   * Start moving to an array of `slots` slots. The current one becomes the old array, emptied into
   * the new one by #move: #step slots per new session, a part per partial sweep, all of it by a
   * whole sweep. The step is such that the move ends when at most half of the sessions that
   * would make the new array half full have come in: a growth always finds the move done (a
   * resize still under way would be finished first, in one call).
   */
  #resize(slots: number): void {
    if (this.#old !== null) this.#move(Infinity);
    this.#old = this.#slot;
    this.#oldMask = this.#mask;
    this.#moved = 0;
    this.#mask = slots - 1;
    this.#slot = SessionTable.#alloc(slots);
    this.#cursor = 0;
    this.#sweepAt = 0;
    const room = Math.max(1, slots / 2 - this.#size); // new sessions before the next growth
    this.#step = Math.max(MOVE_STEP, Math.ceil((2 * (this.#oldMask + 1)) / room));
  }

  /**
   * Move the entries of the old array's next `n` slots into #slot, dropping those whose expiry
   * word is `expiredFrom` or more (a sweep's moves pass #expiredFrom()); done with the old array
   * after its last.
   */
  #move(n: number, expiredFrom = Infinity): void {
    const old = this.#old!;
    const end = Math.min(old.length, this.#moved + n * STRIDE);
    let o = this.#moved;
    for (; o < end; o += STRIDE) {
      const who = old[o + WHO];
      if (who === EMPTY || who === MOVED) continue;
      old[o + WHO] = MOVED;
      if (old[o + EXP] >= expiredFrom) this.#left(who);
      else this.#write(this.#freeSlot(old[o], old[o + 1]), old[o], old[o + 1], who, old[o + EXP]);
    }
    this.#moved = o;
    if (o === old.length) this.#old = null;
  }

  /**
   * Forget the entry expiring first among a few, skipping held ones. While the table resizes, the
   * sample is from #slot only (a growth's move ends long before a default cap is reached).
   */
  #evictOne(): void {
    const s = this.#slot;
    const mask = this.#mask;
    let victim = -1;
    let seen = 0;
    let i = this.#cursor;
    for (let n = 0; n <= mask && n < EVICTION_SCAN && seen < EVICTION_SAMPLE; n++, i = (i + 1) & mask) {
      const o = i * STRIDE;
      if (s[o + WHO] === EMPTY || s[o + EXP] === 0) continue; // free, or held
      seen++;
      if (victim === -1 || s[o + EXP] > s[victim + EXP]) victim = o;
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
    this.#settle();
    if (!decode(sessionId)) return false;
    return this.#touchKey(sessionId, backend, expiresAt);
  }

  /**
   * A session lb has just minted, given as its id and the id's 12 bytes, `bytes[at..at+12]`
   * (`sessionId` must be their base64url): touch()ed at the end of this turn of the event loop,
   * with the others minted in the turn, or before anything reads or changes the table, whichever
   * comes first. Nothing can tell the difference but the cost: under a flood of cookieless
   * requests the inserts run one after another, their code and the table's structures still in
   * cache, instead of one per request among everything else a request does (what that bought:
   * bench/RESULTS.md). The key comes from the bytes; the id is not decoded again.
   */
  add(sessionId: string, bytes: Uint8Array, at: number, backend: string, expiresAt: number): void {
    decodeBytes(bytes, at);
    this.#pending.push(sessionId, K0, K1, backend, expiresAt);
    this.#settleAtTurnEnd();
  }

  /** Sessions added and not yet in the table: id, key (two words), backend, expiry, for each (PENDING_STRIDE). */
  readonly #pending: Array<string | number> = [];
  #scheduled = false;
  readonly #settleSoon = (): void => {
    this.#scheduled = false;
    this.#settle();
  };

  /**
   * One immediate per turn, not one per add: a read (a returning client's persist reads the
   * generation) empties the queue, but what it leaves scheduled serves the rest of the turn.
   */
  #settleAtTurnEnd(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#settleSoon);
  }

  /**
   * Put the added sessions into the table: first in every method that reads or changes it, before
   * it decodes an id of its own (this overwrites the key words K0, K1).
   */
  #settle(): void {
    const p = this.#pending;
    if (p.length === 0) return;
    let i = 0;
    try {
      for (; i < p.length; i += PENDING_STRIDE) {
        K0 = p[i + 1] as number;
        K1 = p[i + 2] as number;
        this.#touchKey(p[i] as string, p[i + 3] as string, p[i + 4] as number);
      }
    } finally {
      // Never expected to throw. If an insert did, it is dropped (so that every later read does
      // not throw again) and those after it stay queued for the next read or turn.
      p.splice(0, i + PENDING_STRIDE);
      if (p.length > 0) this.#settleAtTurnEnd();
    }
  }

  /** touch() with the id's key in K0, K1. */
  #touchKey(sessionId: string, backend: string, expiresAt: number): boolean {
    const who = this.#backendIndex(backend);
    const e = this.#sec(expiresAt);
    const at = this.#find();
    if (at >= 0) {
      const s = this.#slot;
      if (s[at + WHO] === who) {
        if (e < s[at + EXP]) s[at + EXP] = e; // later (a held one's 0 stays)
        return true;
      }
      // Re-pinned: it leaves its old backend (and any hold there).
      this.#holds.delete(sessionId);
      this.#remove(at);
    }
    if (who === -1) return false; // no index left for this backend: not counted anywhere
    const k0 = K0;
    const k1 = K1;
    // A new session (a cookieless request's, under a flood) goes into the free slot the lookup
    // ended on: one walk of its probe run, not a second one to insert. Not after a re-pin's
    // removal, nor when the table must first make room (at its cap, or half full): entries move.
    if (at < 0 && this.#size < this.#cap && this.#size * 2 < this.#mask + 1) {
      this.#put(~at, k0, k1, who, e);
    } else {
      if (this.#size >= this.#cap) this.#evictOne();
      this.#grow();
      this.#put(this.#freeSlot(k0, k1), k0, k1, who, e);
    }
    if (this.#old !== null) this.#move(this.#step);
    return true;
  }

  /** Is this session still live on this backend (e.g. held by an open WebSocket)? */
  isLive(sessionId: string, backend: string): boolean {
    this.#settle();
    if (!decode(sessionId)) return false;
    const at = this.#find();
    return at >= 0 && this.#ids[this.#slot[at + WHO]] === backend && this.#slot[at + EXP] < this.#expiredFrom();
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
      this.#settle();
      if (this.#holds.get(sessionId) !== holders || !decode(sessionId)) return;
      const at = this.#find();
      if (at < 0 || this.#ids[this.#slot[at + WHO]] !== backend) return;
      if (--holders.n > 0) return;
      this.#holds.delete(sessionId);
      this.#slot[at + EXP] = this.#sec(this.#now() + idleMs);
      this.#generation++;
    };
  }

  /**
   * Sessions held by open WebSockets: [session id, backend]. From the holds, not a scan of the
   * table: a cluster worker asks four times a second, and a table at its cap has 2^21 slots.
   */
  held(): Array<[string, string]> {
    this.#settle();
    const out: Array<[string, string]> = [];
    for (const id of this.#holds.keys()) {
      if (!decode(id)) continue;
      const at = this.#find();
      if (at >= 0 && this.#slot[at + EXP] === 0) out.push([id, this.#ids[this.#slot[at + WHO]]!]);
    }
    return out;
  }

  count(backend: string): number {
    this.#settle();
    const idx = this.#index.get(backend);
    return idx === undefined ? 0 : this.#counts[idx];
  }

  get size(): number {
    this.#settle();
    return this.#size;
  }

  /** Sessions added and not yet put into the table (read without putting them in: for tests). */
  get pending(): number {
    return this.#pending.length / PENDING_STRIDE;
  }

  /** See #generation: equal readings mean no entry left the table or lost expiry in between. */
  get generation(): number {
    this.#settle();
    return this.#generation;
  }

  /**
   * Slots of the current array (16 bytes each): the table's memory, which grows and shrinks with
   * it. While a resize is under way the old array is held as well.
   */
  get slots(): number {
    this.#settle();
    return this.#mask + 1;
  }

  /** Slots of the old array not yet moved while the table resizes; 0 when it is not resizing. */
  get moving(): number {
    this.#settle();
    return this.#old === null ? 0 : (this.#old.length - this.#moved) / STRIDE;
  }

  /**
   * Drop a backend's entries and free its index. O(slots) of both arrays while resizing (the old
   * one's are marked moved, not moved); an admin action, not per request.
   */
  forgetBackend(backend: string): void {
    this.#settle();
    const idx = this.#index.get(backend);
    if (idx === undefined) return;
    // Its holds first: the table keeps keys, not ids, so they are found from the ids held.
    for (const id of this.#holds.keys()) {
      if (!decode(id)) continue;
      const at = this.#find();
      if (at >= 0 && this.#slot[at + WHO] === idx) this.#holds.delete(id);
    }
    const old = this.#old;
    if (old !== null) {
      for (let o = this.#moved; o < old.length; o += STRIDE) {
        if (old[o + WHO] !== idx) continue;
        old[o + WHO] = MOVED; // gone: lookups in the old array go on through it
        this.#left(idx);
      }
    }
    const s = this.#slot;
    for (let o = 0; o < s.length; ) {
      if (s[o + WHO] === idx) this.#remove(o);
      else o += STRIDE;
    }
    this.#index.delete(backend);
    this.#ids[idx] = undefined;
    this.#free.push(idx);
  }

  /**
   * Drop expired entries from `part` of the table (at least SWEEP_MIN slots), going on from where
   * the last call stopped; `part` 1 sweeps the whole table now. Run on timers, not per request, in
   * parts so that no call stalls the event loop: a pass over a table at its cap (2^21 slots) takes
   * ~17 ms, a part of a twentieth under 1 ms (8 ns a slot: each slot's 16 bytes are read, where the
   * three-array layout read 4 and took 6 ns). A table of up to SWEEP_MIN slots is swept whole (once
   * no resize is under way). When a call completes a pass over the table, the table shrinks if a
   * flood has expired (to a quarter full at most), so its memory is returned. While the table
   * resizes, a partial sweep moves entries instead (dropping the expired ones): `part` of the old
   * array (at least SWEEP_MIN slots), so the move out of a table at its cap (2^21 slots, 7–32 ms in
   * one go) is spread over 20 calls of a twentieth. A whole sweep finishes the move, sweeps, and
   * shrinks in one go. True when a pass over the table was completed.
   */
  sweep(part = 1): boolean {
    this.#settle();
    const expired = this.#expiredFrom();
    const all = !(part < 1);
    if (this.#old !== null) {
      if (!all) {
        this.#move(Math.max(SWEEP_MIN, Math.ceil((this.#oldMask + 1) * part)), expired);
        return false;
      }
      this.#move(Infinity, expired);
    }
    // A whole sweep is one call with no budget from the first slot. Otherwise every look counts,
    // a second look after a removal included (a later entry may have shifted into the freed
    // slot): the work per call is bounded, not just the slots passed.
    const whole = all || this.#mask < SWEEP_MIN;
    const budget = whole ? Infinity : Math.max(SWEEP_MIN, Math.ceil((this.#mask + 1) * part));
    // In locals: #remove shifts entries within this array, never replaces it.
    const s = this.#slot;
    const end = s.length;
    let o = whole ? 0 : this.#sweepAt;
    for (let n = 0; n < budget; n++) {
      if (s[o + EXP] >= expired && s[o + WHO] !== EMPTY) this.#remove(o);
      else if ((o += STRIDE) >= end) break;
    }
    if (o < end) {
      this.#sweepAt = o;
      return false;
    }
    this.#sweepAt = 0;
    let slots = this.#mask + 1;
    while (slots > this.#minSlots && this.#size * 8 < slots) slots /= 2;
    if (slots < this.#mask + 1) {
      this.#resize(slots);
      if (all) this.#move(Infinity);
    }
    return true;
  }
}
