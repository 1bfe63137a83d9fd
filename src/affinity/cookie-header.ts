/**
 * Cookie header helpers. The affinity cookie is removed before the request reaches the backend
 * (HAProxy `insert indirect`), so the app never sees lb's cookie.
 *
 * Both run on every request in cookie mode, so they search for the cookie's name with indexOf
 * and check what surrounds it in place: no pair is sliced, trimmed or compared as a string of
 * its own (splitting a three-cookie header into pairs cost 1.8–2.8× as much: bench/RESULTS.md).
 * Whitespace around names, values and separators is OWS as HTTP defines it (space and tab);
 * cookie names are tokens (config validates them), so a name never contains `=` or `;`.
 */

const SEMI = 0x3b;
const EQUALS = 0x3d;
const isOws = (c: number): boolean => c === 0x20 || c === 0x09;
const isSeparator = (c: number): boolean => c === SEMI || isOws(c);

/**
 * Where the first pair named `name` at or after `from` begins (the index of its name), or -1:
 * an occurrence counts when only OWS lies between it and the previous `;` (or the start), and
 * between it and the `=` after it. A cookie whose name merely ends or starts with `name`, or a
 * value that contains it, is not taken for it.
 */
function pairAt(text: string, name: string, from: number): number {
  if (name.length === 0) return -1; // config allows no empty name; indexOf('') would never move on
  for (let at = text.indexOf(name, from); at !== -1; at = text.indexOf(name, at + 1)) {
    let b = at - 1;
    while (b >= 0 && isOws(text.charCodeAt(b))) b--;
    if (b >= 0 && text.charCodeAt(b) !== SEMI) continue;
    let e = at + name.length;
    while (isOws(text.charCodeAt(e))) e++;
    if (text.charCodeAt(e) === EQUALS) return at;
  }
  return -1;
}

/** `text[start..end]` without the characters `trim` picks at either end. */
function trimmed(text: string, start: number, end: number, trim: (c: number) => boolean): string {
  while (start < end && trim(text.charCodeAt(start))) start++;
  while (end > start && trim(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/** Value of the first cookie named `name` in a Cookie header (OWS around it removed), or undefined. */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const text = Array.isArray(header) ? header.join('; ') : header;
  const at = pairAt(text, name, 0);
  if (at === -1) return undefined;
  // pairAt found only OWS between the name and its `=`.
  let start = at + name.length;
  while (text.charCodeAt(start) !== EQUALS) start++;
  start++;
  const end = text.indexOf(';', start);
  return trimmed(text, start, end === -1 ? text.length : end, isOws);
}

/**
 * The Cookie header without any cookie named `name`; undefined when nothing else is left. The
 * other cookies are passed on as the client wrote them: each removed pair takes the separator
 * after it, and separators left at either end (the one before a last pair, stray `;`) go too.
 */
export function withoutCookie(header: string, name: string): string | undefined {
  let at = pairAt(header, name, 0);
  if (at === -1) return header;
  let out = '';
  /** Start of the text not yet copied to out. */
  let from = 0;
  while (at !== -1) {
    out += header.slice(from, at);
    const semi = header.indexOf(';', at);
    if (semi === -1) {
      from = header.length;
      break;
    }
    from = semi + 1;
    while (from < header.length && isOws(header.charCodeAt(from))) from++;
    at = pairAt(header, name, from);
  }
  out += header.slice(from);
  const rest = trimmed(out, 0, out.length, isSeparator);
  return rest.length > 0 ? rest : undefined;
}

export interface SetCookieAttrs {
  name: string;
  value: string;
  secure: boolean;
  domain?: string;
  /** seconds */
  maxAge?: number;
}

export function serializeSetCookie(a: SetCookieAttrs): string {
  return `${a.name}=${a.value}${setCookieAttributes(a)}`;
}

/** What follows `name=value` in a Set-Cookie, from `; Path=/` on: the same for every cookie of one age, domain and scheme. */
export function setCookieAttributes(a: Omit<SetCookieAttrs, 'name' | 'value'>): string {
  let s = '; Path=/; HttpOnly; SameSite=Lax';
  if (a.maxAge !== undefined) s += `; Max-Age=${a.maxAge}`;
  if (a.domain) s += `; Domain=${a.domain}`;
  if (a.secure) s += '; Secure';
  return s;
}
