/** Minimal argv parsing: `--flag value`, `--flag=value`, `-c value`, booleans, positionals. */
export interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[], spec: { boolean?: string[]; alias?: Record<string, string> } = {}): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const bools = new Set(spec.boolean ?? []);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      positional.push(a);
      continue;
    }
    let name = a.replace(/^--?/, '');
    let value: string | true | undefined;
    const eq = name.indexOf('=');
    if (eq !== -1) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    name = spec.alias?.[name] ?? name;
    if (value === undefined) {
      if (bools.has(name)) value = true;
      else if (i + 1 < argv.length) value = argv[++i];
      else throw new UsageError(`--${name} needs a value`);
    }
    flags.set(name, value);
  }
  return { positional, flags };
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}
