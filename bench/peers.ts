import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

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
