import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { randomInto } from '../util/random.js';
import { HmacSha256 } from '../util/hmac.js';
import { base64url12 } from '../util/base64url.js';

/**
 * The signed affinity cookie (SPEC §3). Binary layout, base64url-encoded (66 characters):
 *
 *   0      version (1)
 *   1..4   key id: first 4 bytes of SHA-256(secret), so verification picks the right secret
 *   5..12  backend token: HMAC-SHA256(secret, "backend\0" + id)[0..8] (opaque: never the id or address)
 *   13..24 session id (12 random bytes)
 *   25..28 issued-at, seconds since epoch (u32 BE)
 *   29..32 last-seen, seconds since epoch (u32 BE)
 *   33..48 HMAC-SHA256(secret, bytes 0..32)[0..16]
 *
 * Everything needed to enforce maxIdle/maxLife is in the cookie: no server-side table.
 */
const VERSION = 1;
/** Bytes 0..12: the same in every cookie for one backend under one key. */
const PREFIX = 13;
/** Where a cookie's session id starts (12 bytes), right after the prefix. */
export const SESSION_AT = PREFIX;
const BODY = 33;
const MAC = 16;
const TOTAL = BODY + MAC;
const ENCODED_LENGTH = Math.ceil((TOTAL * 4) / 3);

export type RejectReason = 'malformed' | 'unknown-key' | 'bad-signature' | 'expired' | 'unknown-backend';

export interface CookieClaims {
  /** Backend token (16 hex chars). */
  token: string;
  sessionId: string;
  issuedAt: number;
  lastSeen: number;
  keyId: string;
}

export type DecodeResult =
  | { ok: true; claims: CookieClaims }
  | { ok: false; reason: RejectReason; /** authentic but idle too long: a held session (open WebSocket) may still honour it */ idleClaims?: CookieClaims };

interface Key {
  id: Buffer;
  idHex: string;
  secret: string;
  /** Signs and verifies cookie bodies. */
  mac: HmacSha256;
}

export interface CookieLimits {
  /** ms */
  maxIdle: number;
  /** ms */
  maxLife: number;
}

/**
 * A cookie's validity by its own clock at `now` (ms): past maxLife (or with impossible times),
 * idle past maxIdle (a session held server-side may still honour it), or valid. The one place
 * the rule is written: decode applies it, and so does CookieAffinity to the pins it caches.
 */
export function cookieAge(issuedAt: number, lastSeen: number, now: number, limits: CookieLimits): 'valid' | 'idle' | 'expired' {
  if (now - issuedAt > limits.maxLife || lastSeen < issuedAt) return 'expired';
  return now - lastSeen > limits.maxIdle ? 'idle' : 'valid';
}

/**
 * A copy of a cookie value that shares no memory with it: a value read from a request is a
 * slice of its Cookie header, which a cache keyed by it would keep alive. Cookie values that
 * decode are ASCII.
 */
export const detached = (value: string): string => Buffer.from(value, 'latin1').toString('latin1');

/**
 * A time in whole seconds as a u32, big-endian, at `at`: wrapped by `>>> 0`, the same bytes as
 * the `writeUInt32BE(seconds >>> 0)` it replaces (which, unwrapped, throws outside 0..2^32-1).
 */
function putU32(buf: Uint8Array, at: number, seconds: number): void {
  const v = seconds >>> 0;
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
}

export class CookieCodec {
  readonly #keys: Key[];
  readonly #byId = new Map<string, Key>();

  /** `secrets[0]` signs; every secret verifies (rotation with overlap). */
  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) throw new Error('cookie affinity needs at least one secret');
    this.#keys = secrets.map((secret) => {
      const id = createHash('sha256').update(secret).digest().subarray(0, 4);
      return { id, idHex: id.toString('hex'), secret, mac: new HmacSha256(secret, BODY) };
    });
    for (const k of this.#keys) if (!this.#byId.has(k.idHex)) this.#byId.set(k.idHex, k);
  }

  /** The opaque token for a backend id under the signing key, and under each verifying key. */
  tokenFor(backendId: string, keyId: string = this.#keys[0].idHex): string {
    const key = this.#byId.get(keyId) ?? this.#keys[0];
    let byBackend = this.#tokens.get(key.idHex);
    if (!byBackend) this.#tokens.set(key.idHex, (byBackend = new Map()));
    let token = byBackend.get(backendId);
    if (token === undefined) {
      token = createHmac('sha256', key.secret).update('backend\0').update(backendId).digest().subarray(0, 8).toString('hex');
      if (byBackend.size < 10_000) byBackend.set(backendId, token);
    }
    return token;
  }

  /** Backend tokens per key id (one HMAC per backend, not per cookie). */
  readonly #tokens = new Map<string, Map<string, string>>();
  /**
   * Per backend, a cookie's first 13 bytes under the signing key (version, key id, backend
   * token), as #issue copies them: one lookup a cookie (bounded like #tokens).
   */
  readonly #prefixes = new Map<string, Uint8Array>();

  #prefix(backendId: string): Uint8Array {
    let bytes = this.#prefixes.get(backendId);
    if (bytes === undefined) {
      const key = this.#keys[0];
      bytes = new Uint8Array(PREFIX);
      bytes[0] = VERSION;
      bytes.set(key.id, 1);
      bytes.set(Buffer.from(this.tokenFor(backendId, key.idHex), 'hex'), 5);
      if (this.#prefixes.size < 10_000) this.#prefixes.set(backendId, bytes);
    }
    return bytes;
  }
  /**
   * Cookies whose signature already verified → their claims, so a returning client costs a map
   * lookup instead of an HMAC (expiry is still checked on every request). Bounded, oldest out.
   */
  readonly #verified = new Map<string, CookieClaims>();

  get signingKeyId(): string {
    return this.#keys[0].idHex;
  }

  get keyIds(): string[] {
    return [...this.#byId.keys()];
  }

  /** The cookie being built (encode and mint are synchronous and call nothing that re-enters the codec: one at a time). */
  readonly #scratch = Buffer.allocUnsafe(TOTAL);

  /** A cookie for these claims; without a session id, a new random one. */
  encode(claims: { backendId: string; sessionId?: string; issuedAt: number; lastSeen: number }): string {
    return this.#issue(claims.backendId, claims.issuedAt, claims.lastSeen, claims.sessionId);
  }

  /**
   * The cookie of a new session issued at `now` (ms), and the session's id: the id's 12 random
   * bytes go straight into the cookie, which is signed in place (no buffer allocated, no id
   * encoded and decoded again: under a cookieless flood this runs on every request).
   */
  mint(backendId: string, now: number): { value: string; sessionId: string } {
    const value = this.#issue(backendId, now, now);
    return { value, sessionId: base64url12(this.#scratch, SESSION_AT) };
  }

  /**
   * The bytes of the cookie built last (by mint or encode), until the next: its session id is the
   * 12 bytes from SESSION_AT. Read right after mint, by the session table (SessionTable#add), which
   * counts a new session from those bytes instead of decoding its id's characters again. The
   * codec's own buffer, not a copy: read it, never write it.
   */
  get mintedBytes(): Uint8Array {
    return this.#scratch;
  }

  /** Build and sign a cookie in the scratch buffer: version, key id, backend token, session id (given, or random), times. */
  #issue(backendId: string, issuedAt: number, lastSeen: number, sessionId?: string): string {
    const buf = this.#scratch;
    const prefix = this.#prefix(backendId);
    for (let i = 0; i < PREFIX; i++) buf[i] = prefix[i];
    if (sessionId === undefined) randomInto(buf, SESSION_AT, 12);
    // Decoded straight into place: 16 base64url characters are exactly 12 bytes.
    else if (sessionId.length !== 16 || buf.write(sessionId, SESSION_AT, 12, 'base64url') !== 12) throw new Error('session id must be 12 bytes');
    putU32(buf, 25, Math.floor(issuedAt / 1000));
    putU32(buf, 29, Math.floor(lastSeen / 1000));
    this.#keys[0].mac.digestInto(buf, BODY, buf, BODY, MAC); // the MAC into the cookie's own tail
    return buf.toString('base64url');
  }

  /** Verify signature and expiry. `now` in ms. Never throws on hostile input. */
  decode(value: string, now: number, limits: CookieLimits): DecodeResult {
    if (typeof value !== 'string' || value.length !== ENCODED_LENGTH) return { ok: false, reason: 'malformed' };
    const known = this.#verified.get(value);
    if (known) return this.#expiry(known, now, limits);
    const buf = Buffer.from(value, 'base64url');
    if (buf.length !== TOTAL || buf[0] !== VERSION || buf.toString('base64url') !== value) {
      return { ok: false, reason: 'malformed' };
    }
    const key = this.#byId.get(buf.toString('hex', 1, 5));
    if (!key) return { ok: false, reason: 'unknown-key' };
    const mac = key.mac.digest(buf.subarray(0, BODY)).subarray(0, MAC);
    if (!timingSafeEqual(mac, buf.subarray(BODY))) return { ok: false, reason: 'bad-signature' };
    const issuedAt = buf.readUInt32BE(25) * 1000;
    const lastSeen = buf.readUInt32BE(29) * 1000;
    const claims: CookieClaims = {
      token: buf.toString('hex', 5, 13),
      sessionId: base64url12(buf, SESSION_AT),
      issuedAt,
      lastSeen,
      keyId: key.idHex,
    };
    if (this.#verified.size >= 10_000) this.#verified.delete(this.#verified.keys().next().value!);
    this.#verified.set(detached(value), claims);
    return this.#expiry(claims, now, limits);
  }

  #expiry(claims: CookieClaims, now: number, limits: CookieLimits): DecodeResult {
    const state = cookieAge(claims.issuedAt, claims.lastSeen, now, limits);
    if (state === 'expired') return { ok: false, reason: 'expired' };
    if (state === 'idle') return { ok: false, reason: 'expired', idleClaims: claims };
    return { ok: true, claims };
  }
}
