import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isScalar, LineCounter, parseDocument } from 'yaml';
import { LbError } from '../util/errors.js';
import type { Issue } from './schema.js';
import { readConfig } from './spec.js';
import type { LbConfig } from './types.js';

/** Invalid configuration: every issue, each as `key.path: expected …, got … (line N)`. */
export class ConfigError extends LbError {
  readonly issues: Issue[];
  constructor(file: string, issues: Issue[]) {
    super('LB_CONFIG_INVALID', `${file}: invalid configuration\n${issues.map(formatIssue).join('\n')}`);
    this.issues = issues;
  }
}

export function formatIssue(i: Issue): string {
  return `${i.path || '(top)'}: ${i.message}${i.line ? ` (line ${i.line})` : ''}`;
}

/** Freeze a config and everything in it (also a copy received over the cluster IPC channel). */
export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

export interface ParseOptions {
  file?: string;
  env?: Record<string, string | undefined>;
  /** Relative paths in the config (TLS files, state file) resolve from here. */
  baseDir?: string;
}

/** YAML text → validated, frozen config; throws ConfigError listing every problem. */
export function parseConfig(text: string, opts: ParseOptions = {}): LbConfig {
  const file = opts.file ?? 'config';
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const issues: Issue[] = [];
  for (const e of doc.errors) {
    issues.push({ path: '(yaml)', message: e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, ''), line: e.linePos?.[0]?.line });
  }
  if (issues.length) throw new ConfigError(file, issues);
  const root = doc.contents ?? (undefined as unknown);
  if (!root || (isScalar(root) && root.value === null)) throw new ConfigError(file, [{ path: '(top)', message: 'expected a mapping, got an empty file' }]);
  const ctx = { issues, lines, env: opts.env ?? process.env };
  const config = readConfig(root, ctx, opts.baseDir ?? process.cwd());
  if (issues.length || !config) throw new ConfigError(file, issues.length ? issues : [{ path: '(top)', message: 'invalid' }]);
  return deepFreeze(config);
}

export function loadConfigFile(path: string, env: Record<string, string | undefined> = process.env): LbConfig {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '(file)', message: `cannot read: ${(err as Error).message}` }]);
  }
  // Relative paths (TLS files, state file) are relative to the working directory, as in the
  // shipped examples (config/tls/cert.pem, state/lb-state.json) run from the checkout.
  return parseConfig(text, { file, env, baseDir: process.cwd() });
}
