import { BlockList, isIP } from 'node:net';

/** A set of trusted proxy addresses ("10.0.0.0/8", "127.0.0.1", "::1/128"). */
export function trustList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, bits] = entry.split('/');
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  if (entries.length > 0) verdicts.set(list, new Map());
  return list;
}

/** Strip the IPv4-mapped IPv6 prefix Node reports for dual-stack sockets. */
export function normalizeIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

export function isTrusted(list: BlockList, ip: string): boolean {
  if (!ip) return false;
  const cache = verdicts.get(list);
  if (!cache) return false; // no trusted proxies: nothing to check
  const known = cache.get(ip);
  if (known !== undefined) return known;
  const type = isIP(ip);
  const verdict = type !== 0 && list.check(ip, type === 6 ? 'ipv6' : 'ipv4');
  if (cache.size >= 10_000) cache.clear();
  cache.set(ip, verdict);
  return verdict;
}

/**
 * Per trust list, the verdict for each address seen (BlockList.check builds a SocketAddress per
 * call; peers repeat). Lists with no entries have no cache: nothing is trusted.
 */
const verdicts = new WeakMap<BlockList, Map<string, boolean>>();

/**
 * The client address: the peer, or — when the peer is a trusted proxy — the right-most address
 * in X-Forwarded-For that is not itself trusted (RFC 7239 §5.2 reasoning; what nginx's
 * real_ip_recursive does).
 */
export function clientAddress(list: BlockList, peer: string, xff: string | string[] | undefined): string {
  if (!xff || !isTrusted(list, peer)) return peer;
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i].trim();
    if (isIP(hop) === 0) return peer;
    if (!isTrusted(list, hop)) return hop;
  }
  return hops[0]?.trim() || peer;
}
