import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  dir: string;
  cert: string;
  key: string;
  /** SHA-256 fingerprint as Node reports it (peerCertificate.fingerprint256). */
  fingerprint: string;
}

/** A self-signed certificate for localhost, generated now with openssl. */
export function makeCert(dir = mkdtempSync(join(tmpdir(), 'lb-cert-')), name = 'cert'): TestCert {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}-key.pem`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  const fp = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-fingerprint', '-sha256']).toString();
  return { dir, cert, key, fingerprint: fp.split('=')[1].trim() };
}

export function pem(path: string): string {
  return readFileSync(path, 'utf8');
}
