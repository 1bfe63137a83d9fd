import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { resolve } from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { TlsConfig } from '../config/types.js';

/**
 * Strong defaults (Mozilla "intermediate"): TLS 1.2+ with forward-secret AEAD suites only.
 * TLS 1.3 suites are always the Node defaults, which are all strong.
 */
const CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Read the one shared certificate; throws an error that names the file on failure. */
export function loadTlsOptions(cfg: TlsConfig, baseDir: string): SecureContextOptions {
  const read = (p: string, what: string): Buffer => {
    const file = resolve(baseDir, p);
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`tls.${what}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const opts: SecureContextOptions = { minVersion: cfg.minVersion, ciphers: CIPHERS, honorCipherOrder: true };
  if (cfg.pfx) {
    opts.pfx = read(cfg.pfx, 'pfx');
    if (cfg.passphrase) opts.passphrase = cfg.passphrase;
  } else {
    opts.cert = read(cfg.cert!, 'cert');
    opts.key = read(cfg.key!, 'key');
    if (cfg.passphrase) opts.passphrase = cfg.passphrase;
  }
  try {
    createSecureContext(opts);
  } catch (err) {
    throw new Error(`tls: certificate and key do not load: ${(err as Error).message}`, { cause: err });
  }
  return opts;
}

export function tlsFiles(cfg: TlsConfig, baseDir: string): string[] {
  return [cfg.pfx, cfg.cert, cfg.key].filter((p): p is string => !!p).map((p) => resolve(baseDir, p));
}

/**
 * Watch the certificate files (polling: survives rename-into-place and editors that replace
 * files). Returns the undo.
 */
export function watchTls(files: string[], onChange: () => void, intervalMs = 1000): () => void {
  let timer: NodeJS.Timeout | undefined;
  const listener = (): void => {
    // cert and key are usually replaced one after the other: settle before reloading.
    clearTimeout(timer);
    timer = setTimeout(onChange, 200);
  };
  for (const f of files) watchFile(f, { interval: intervalMs, persistent: false }, listener);
  return () => {
    clearTimeout(timer);
    for (const f of files) unwatchFile(f, listener);
  };
}
