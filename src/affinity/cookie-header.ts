/**
 * Cookie header helpers. The affinity cookie is removed before the request reaches the backend
 * (HAProxy `insert indirect`), so the app never sees lb's cookie.
 */

/** Value of the first cookie named `name` in a Cookie header, or undefined. */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const text = Array.isArray(header) ? header.join('; ') : header;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(';', start);
    if (end === -1) end = text.length;
    const eq = text.indexOf('=', start);
    if (eq !== -1 && eq < end && text.slice(start, eq).trim() === name) return text.slice(eq + 1, end).trim();
    start = end + 1;
  }
  return undefined;
}

/** The Cookie header without cookie `name`; undefined when nothing is left. One scan, no arrays. */
export function withoutCookie(header: string, name: string): string | undefined {
  if (!header.includes(name)) return header;
  let out = '';
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    const eq = header.indexOf('=', start);
    const pair = header.slice(start, end).trim();
    const key = eq !== -1 && eq < end ? header.slice(start, eq).trim() : pair;
    if (pair.length > 0 && key !== name) out = out ? `${out}; ${pair}` : pair;
    start = end + 1;
  }
  return out || undefined;
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
  let s = `${a.name}=${a.value}; Path=/; HttpOnly; SameSite=Lax`;
  if (a.maxAge !== undefined) s += `; Max-Age=${a.maxAge}`;
  if (a.domain) s += `; Domain=${a.domain}`;
  if (a.secure) s += '; Secure';
  return s;
}
