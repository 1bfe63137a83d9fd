import { isMap, isScalar, isSeq, type LineCounter, type Node } from 'yaml';
import { parseDuration } from './duration.js';

/**
 * A small validator over the yaml AST: every reader knows its node, so every error carries the
 * key path and the line. Errors are collected, never fail-fast, so `check-config` lists them all.
 */
export interface Issue {
  path: string;
  message: string;
  line?: number;
}

export interface Ctx {
  issues: Issue[];
  lines: LineCounter;
  env: Record<string, string | undefined>;
}

/** Reads a node at a path; undefined when absent or invalid (an issue was recorded). */
export type Reader<T> = (node: unknown, path: string, ctx: Ctx) => T | undefined;

export function lineOf(node: unknown, ctx: Ctx): number | undefined {
  const range = (node as Node | undefined)?.range;
  return range ? ctx.lines.linePos(range[0]).line : undefined;
}

export function fail(ctx: Ctx, path: string, node: unknown, message: string): undefined {
  ctx.issues.push({ path, message, line: lineOf(node, ctx) });
  return undefined;
}

export function describe(node: unknown, value?: unknown): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  const v = value !== undefined ? value : isScalar(node) ? node.value : node;
  if (v === null || v === undefined) return 'nothing';
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

const ENV = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** A scalar's value with `${VAR}` / `${VAR:-default}` substituted (strings only). */
function scalar(node: unknown, path: string, ctx: Ctx): { ok: boolean; value: unknown } {
  if (!isScalar(node)) return { ok: false, value: undefined };
  const v = node.value;
  if (typeof v !== 'string' || !v.includes('${')) return { ok: true, value: v };
  let ok = true;
  const value = v.replace(ENV, (_m, name: string, def: string | undefined) => {
    const got = ctx.env[name];
    if (got !== undefined && got !== '') return got;
    if (def !== undefined) return def;
    ok = false;
    fail(ctx, path, node, `environment variable ${name} is not set (write \${${name}:-default} for a default)`);
    return '';
  });
  return { ok, value };
}

export function str(opts: { oneOf?: readonly string[]; pattern?: RegExp; expected?: string; allowEmpty?: boolean } = {}): Reader<string> {
  return (node, path, ctx) => {
    if (!isScalar(node)) return fail(ctx, path, node, `expected ${opts.expected ?? 'a string'}, got ${describe(node)}`);
    const { ok, value } = scalar(node, path, ctx);
    if (!ok) return undefined;
    if (typeof value !== 'string' && typeof value !== 'number') return fail(ctx, path, node, `expected ${opts.expected ?? 'a string'}, got ${describe(node, value)}`);
    const s = String(value);
    if (opts.oneOf && !opts.oneOf.includes(s)) return fail(ctx, path, node, `expected one of ${opts.oneOf.join(' | ')}, got ${JSON.stringify(s)}${suggest(s, opts.oneOf)}`);
    if (opts.pattern && !opts.pattern.test(s)) return fail(ctx, path, node, `expected ${opts.expected ?? `text matching ${opts.pattern}`}, got ${JSON.stringify(s)}`);
    if (!s && !opts.allowEmpty) return fail(ctx, path, node, `expected ${opts.expected ?? 'a string'}, got ""`);
    return s;
  };
}

export function int(min: number, max: number, expected = `a whole number from ${min} to ${max}`): Reader<number> {
  return (node, path, ctx) => {
    const { ok, value } = scalar(node, path, ctx);
    if (!ok && isScalar(node)) return undefined;
    const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) return fail(ctx, path, node, `expected ${expected}, got ${describe(node, value)}`);
    return n;
  };
}

export function num(check: (n: number) => boolean, expected: string): Reader<number> {
  return (node, path, ctx) => {
    const { ok, value } = scalar(node, path, ctx);
    if (!ok && isScalar(node)) return undefined;
    const n = typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value)) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n) || !check(n)) return fail(ctx, path, node, `expected ${expected}, got ${describe(node, value)}`);
    return n;
  };
}

export const bool: Reader<boolean> = (node, path, ctx) => {
  const { value } = scalar(node, path, ctx);
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  return fail(ctx, path, node, `expected true or false, got ${describe(node, value)}`);
};

export const duration: Reader<number> = (node, path, ctx) => {
  const { ok, value } = scalar(node, path, ctx);
  if (!ok && isScalar(node)) return undefined;
  try {
    if (typeof value === 'string' || value === 0) return parseDuration(String(value));
  } catch {
    /* reported below */
  }
  return fail(ctx, path, node, `expected a duration like 5s, got ${describe(node, value)}`);
};

export function list<T>(item: Reader<T>, opts: { scalarOk?: boolean } = {}): Reader<T[]> {
  return (node, path, ctx) => {
    if (opts.scalarOk && isScalar(node)) {
      const v = item(node, path, ctx);
      return v === undefined ? undefined : [v];
    }
    if (!isSeq(node)) return fail(ctx, path, node, `expected a list, got ${describe(node)}`);
    const out: T[] = [];
    node.items.forEach((n, i) => {
      const v = item(n, `${path}[${i}]`, ctx);
      if (v !== undefined) out.push(v);
    });
    return out;
  };
}

/** Field spec: reader and default (a function for defaults that depend on nothing mutable). */
export type Fields = Record<string, Reader<unknown>>;

/**
 * A mapping with known keys: unknown keys are errors ("did you mean" when close); each present
 * key is read by its reader. Returns the raw read values keyed by name plus the nodes.
 */
export function fields(node: unknown, path: string, ctx: Ctx, spec: Fields): { values: Record<string, unknown>; nodes: Record<string, unknown> } | undefined {
  if (!isMap(node)) {
    fail(ctx, path, node, `expected a mapping, got ${describe(node)}`);
    return undefined;
  }
  const values: Record<string, unknown> = {};
  const nodes: Record<string, unknown> = {};
  const known = Object.keys(spec);
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const at = path ? `${path}.${key}` : key;
    if (!(key in spec)) {
      fail(ctx, at, pair.key, `unknown key${suggest(key, known)}`);
      continue;
    }
    nodes[key] = pair.value;
    if (pair.value === null || (isScalar(pair.value) && pair.value.value === null)) continue;
    values[key] = spec[key](pair.value, at, ctx);
  }
  return { values, nodes };
}

/** A mapping of user-chosen names to items (pools). */
export function named<T>(item: (name: string) => Reader<T>): Reader<Record<string, T>> {
  return (node, path, ctx) => {
    if (!isMap(node)) return fail(ctx, path, node, `expected a mapping of names, got ${describe(node)}`);
    const out: Record<string, T> = {};
    for (const pair of node.items) {
      const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const v = item(name)(pair.value, path ? `${path}.${name}` : name, ctx);
      if (v !== undefined) out[name] = v;
    }
    return out;
  };
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

export function suggest(word: string, options: readonly string[]): string {
  let best: string | undefined;
  let bestD = 3;
  for (const o of options) {
    const dd = distance(word, o);
    if (dd < bestD) {
      bestD = dd;
      best = o;
    }
  }
  return best ? ` (did you mean "${best}"?)` : '';
}
