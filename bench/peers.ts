import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Make sure the peer programs a benchmark compares against are installed (Debian packages).
 * Installs missing ones with apt-get when running as root; otherwise says what is missing.
 */
export function ensurePeers(peers: Array<{ bin: string; pkg: string }>): void {
  const missing = peers.filter((p) => !existsSync(p.bin));
  if (!missing.length) return;
  if (process.getuid?.() !== 0) {
    console.error(`missing ${missing.map((p) => p.pkg).join(', ')}: install them to compare against them`);
    return;
  }
  console.error(`installing ${missing.map((p) => p.pkg).join(', ')} with apt-get…`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', ...missing.map((p) => p.pkg)], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** A port that was free a moment ago (for configs that need a fixed port). */
export async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}
