import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LbError } from '../util/errors.js';
import type { PersistedState, StateStore } from './types.js';

/**
 * The embedded default store: one JSON file, written atomically (temp file, fsync, rename,
 * fsync of the directory), so a crash leaves either the old or the new state, never half.
 * A corrupt file is an error naming the file; it is never silently overwritten.
 */
export class FileStateStore implements StateStore {
  readonly file: string;
  #chain: Promise<void> = Promise.resolve();

  constructor(file: string) {
    this.file = file;
  }

  async load(): Promise<PersistedState | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new LbError('LB_STATE_INVALID', `state file ${this.file} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new LbError('LB_STATE_INVALID', `state file ${this.file} is corrupt (not JSON: ${(err as Error).message}); fix or move it away`, { cause: err });
    }
    return validateState(parsed, this.file);
  }

  /** Writes are serialized: the last save wins, in call order. */
  save(state: PersistedState): Promise<void> {
    const next = this.#chain.then(() => this.#write(state));
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    await this.#chain;
  }

  async #write(state: PersistedState): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(state, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    const dir = await open(dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

const ADMIN_STATES = new Set(['active', 'draining', 'drained', 'maint']);

/** Shape check of a loaded (or imported) state document; errors name the source and field. */
export function validateState(doc: unknown, source: string): PersistedState {
  const fail = (what: string): never => {
    throw new LbError('LB_STATE_INVALID', `state ${source}: ${what}`);
  };
  if (!doc || typeof doc !== 'object') fail('expected a JSON object');
  const s = doc as Record<string, unknown>;
  if (s.format !== 1) fail(`format: expected 1, got ${JSON.stringify(s.format)}`);
  if (typeof s.version !== 'number') fail('version: expected a number');
  if (!Array.isArray(s.backends)) fail('backends: expected a list');
  if (!Array.isArray(s.removed) || !s.removed.every((x) => typeof x === 'string')) fail('removed: expected a list of ids');
  if (s.cookieSecret !== undefined && typeof s.cookieSecret !== 'string') fail('cookieSecret: expected a string');
  (s.backends as unknown[]).forEach((b, i) => {
    const e = b as Record<string, unknown>;
    if (!e || typeof e !== 'object') fail(`backends[${i}]: expected an object`);
    for (const k of ['id', 'pool', 'url'] as const) if (typeof e[k] !== 'string') fail(`backends[${i}].${k}: expected a string`);
    if (typeof e.weight !== 'number' || !(e.weight >= 0)) fail(`backends[${i}].weight: expected a number`);
    if (!ADMIN_STATES.has(e.adminState as string)) fail(`backends[${i}].adminState: expected active|draining|drained|maint`);
  });
  return s as unknown as PersistedState;
}

/** A store that keeps the document in memory only (cluster workers: the primary owns the file). */
export class MemoryStateStore implements StateStore {
  #doc?: PersistedState;
  async load(): Promise<PersistedState | undefined> {
    return this.#doc;
  }
  async save(state: PersistedState): Promise<void> {
    this.#doc = state;
  }
  async close(): Promise<void> {}
}
