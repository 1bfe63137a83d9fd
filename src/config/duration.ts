/** Durations as written in config and on the CLI: `250ms`, `5s`, `10m`, `12h`, `1d`, `1m30s`. */
const UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

/** ms; throws on anything else (a bare number is only accepted as 0). */
export function parseDuration(text: string): number {
  const t = String(text).trim();
  if (t === '0') return 0;
  if (!t) throw new Error('empty duration');
  PART.lastIndex = 0;
  let total = 0;
  let pos = 0;
  for (let m = PART.exec(t); m; m = PART.exec(t)) {
    total += Number(m[1]) * UNIT[m[2]];
    pos = PART.lastIndex;
  }
  if (pos !== t.length) throw new Error(`not a duration: ${t}`);
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  for (const [u, f] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= f && ms % f === 0) return `${ms / f}${u}`;
  }
  return `${ms}ms`;
}
