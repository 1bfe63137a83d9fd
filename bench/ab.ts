/**
 * A/B by commit: what a change bought, in lb's CPU per request. Each revision is built in its own
 * git worktree (sharing this checkout's node_modules); then, interleaved over rounds (A B C … A B
 * C …), a fresh lb of each variant is started pinned to CPU 0, warmed up for 2 s and measured
 * for `--seconds` under `wrk -t1 -c50` on CPU 1, against three Node backends (one process, CPU 1).
 * CPU is lb's utime+stime from /proc divided by the requests wrk completed. Prints each round and
 * the median as a Markdown table. This is how bench/RESULTS.md's "what each change bought" rows
 * are measured; the full side-by-side run (bench/run.ts) takes too long per change.
 *
 *   node --import tsx bench/ab.ts [--rounds 5] [--seconds 5] [--path /100] [--returning] [--paired] VARIANT…
 *
 * VARIANT is REV:MODE[:NODE-FLAG…] (a git revision, or `.` for the working tree's dist/; MODE
 * `none` or `cookie`, default none; then flags for node, e.g. `.:cookie:--max-semi-space-size=64`)
 * or `floor` (bench/proxies/floor.cjs, the least a Node proxy can do).
 * --returning sends back 1,000 cookies each variant issued (cookie mode), else no cookies.
 * --paired (two variants): both run at the same time, both pinned to CPU 0, each under its own
 * wrk; the result is the ratio B/A per round. On a host whose speed drifts between runs, this
 * compares A and B under the same conditions. But the two share the core in time slices: cookie
 * over none read higher paired than alternating in 16 of 16 back-to-back round pairs (+7.0
 * against +2.3 %, bench/RESULTS.md, 2026-11-29). Run A against itself first to see the spread.
 * --alternate MS (two variants): both lbs are started and loaded in the same round, but take
 * turns: one wrk is stopped (SIGSTOP) while the other runs, swapped every MS ms, until each has had
 * --seconds of turns (A started and run first in odd rounds, B in even ones). Each lb is alone on CPU 0 while it
 * serves, as in the issue's setup, and a drift of the host's speed falls on both alike; requests
 * are counted by each lb's /metrics over the same window; the result is B/A per round.
 *   e.g. node --import tsx bench/ab.ts HEAD~1:none HEAD:none floor
 *        node --import tsx bench/ab.ts --paired HEAD~1:cookie HEAD:cookie
 *        node --import tsx bench/ab.ts --alternate 250 .:none .:cookie
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ensurePeers } from './peers.js';
import { COOKIE_AFFINITY, cleanup, measureTogether, median, numberOpt, startBackends, startFloor, startLb, type Target } from './harness.js';

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => numberOpt(args, name, def);
const rounds = opt('--rounds', 5);
const seconds = opt('--seconds', 5);
const pathAt = args.indexOf('--path');
const path = pathAt >= 0 ? args[pathAt + 1] : '/100';
const returning = args.includes('--returning');
const alternateMs = args.includes('--alternate') ? opt('--alternate', 250) : undefined;
const paired = args.includes('--paired') || alternateMs !== undefined;
const variants = args.filter((a, i) => !a.startsWith('--') && !['--rounds', '--seconds', '--path', '--alternate'].includes(args[i - 1]));
if (!variants.length || (paired && variants.length !== 2) || alternateMs === 0 || (alternateMs !== undefined && (args.includes('--paired') || variants.includes('floor')))) {
  console.error('usage: node --import tsx bench/ab.ts [--rounds 5] [--seconds 5] [--path /100] [--returning] [--paired | --alternate MS] REV[:none|cookie[:NODE-FLAG…]]… [floor]');
  console.error('       (--paired and --alternate take exactly two variants, not both; --alternate: MS > 0, lb variants only: lb counts the requests)');
  process.exit(2);
}

interface Variant {
  label: string;
  start: (dir: string, bports: number[], tag: string) => Promise<Target>;
}

const worktrees: string[] = [];

/** A revision's dist/cli/main.js: `.` is this checkout's build; anything else is built in a worktree. */
function entryFor(rev: string, dir: string): string {
  if (rev === '.') return resolve('dist/cli/main.js');
  const sha = execFileSync('git', ['rev-parse', '--short', rev], { encoding: 'utf8' }).trim();
  const wt = join(dir, `wt-${sha}`);
  if (!existsSync(wt)) {
    execFileSync('git', ['worktree', 'add', '--detach', wt, sha], { stdio: 'ignore' });
    worktrees.push(wt);
    symlinkSync(resolve('node_modules'), join(wt, 'node_modules'));
    console.error(`building ${rev} (${sha}) in ${wt}`);
    execFileSync(process.execPath, [resolve('node_modules/typescript/bin/tsc'), '-p', join(wt, 'tsconfig.json')], { stdio: 'inherit' });
  }
  return join(wt, 'dist/cli/main.js');
}

function variant(spec: string, dir: string): Variant {
  if (spec === 'floor') {
    return {
      label: 'node floor',
      start: (d, bports, tag) => startFloor(d, bports, tag),
    };
  }
  const [rev, mode = 'none', ...flags] = spec.split(':');
  if (mode !== 'none' && mode !== 'cookie') throw new Error(`${spec}: mode must be none or cookie`);
  const entry = entryFor(rev, dir);
  const affinity = mode === 'cookie' ? COOKIE_AFFINITY : '{ mode: none }';
  return { label: spec, start: (d, bports, tag) => startLb(d, bports, tag, '1', affinity, '0', spec, undefined, entry, flags) };
}

async function main(): Promise<void> {
  ensurePeers([{ bin: '/usr/bin/wrk', pkg: 'wrk' }]);
  const dir = mkdtempSync(join(tmpdir(), 'lb-bench-ab-'));
  try {
    const vs = variants.map((s) => variant(s, dir));
    const bports = await startBackends(dir);
    const results = vs.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      const groups = paired ? [vs] : vs.map((v) => [v]);
      for (const [g, group] of groups.entries()) {
        let ms: Array<{ us: number; errors: number; requests: number }>;
        try {
          ms = await measureTogether(group.map((v) => (tag) => v.start(dir, bports, tag)), { dir, tag: `r${r}-${g}`, path, returning, seconds, labels: group.map((v) => v.label), alternateMs, firstTurn: r % 2 });
        } catch (e) {
          console.error(`round ${r + 1}/${rounds}: failed, left out: ${(e as Error).message}`);
          ms = group.map(() => ({ us: NaN, errors: 0, requests: 0 }));
        }
        // A round with errors is not a measurement of the same work: left out (NaN), in the medians and the ratio.
        const bad = ms.some((m) => m.errors > 0);
        for (const [i, v] of group.entries()) {
          results[vs.indexOf(v)].push(bad ? NaN : ms[i].us);
          console.error(`round ${r + 1}/${rounds} ${v.label}: ${ms[i].us.toFixed(1)} µs/req, ${ms[i].requests} requests${ms[i].errors ? `, ${ms[i].errors} errors` : ''}${bad ? ' (round left out)' : ''}`);
        }
      }
    }
    console.log(`${path}${returning ? ', returning users' : ''}; ${rounds} rounds × ${seconds} s${alternateMs ? `, alternating (both on CPU 0, taking turns of ${alternateMs} ms)` : paired ? ', paired (both at once on CPU 0)' : ''}; lb CPU µs per request\n`);
    console.log('| variant | rounds | median |\n|---|---|---:|');
    for (const [i, v] of vs.entries()) console.log(`| ${v.label} | ${results[i].map((x) => x.toFixed(1)).join(' ')} | ${median(results[i]).toFixed(1)} |`);
    if (paired) {
      const ratios = results[1].map((b, r) => b / results[0][r]);
      console.log(`| ${vs[1].label} / ${vs[0].label} | ${ratios.map((x) => x.toFixed(3)).join(' ')} | ${median(ratios).toFixed(3)} |`);
      // Odd rounds start (and, taking turns, run) A first; even rounds B: an order effect shows as a gap between these two.
      const parity = (p: number) => median(ratios.filter((_, r) => r % 2 === p)).toFixed(3);
      console.log(`\nB/A median of odd rounds (A first) ${parity(0)}, of even rounds (B first) ${parity(1)}; ${ratios.filter((x) => x <= 1.05).length} of ${ratios.filter(Number.isFinite).length} rounds ≤ 1.05`);
    }
  } finally {
    cleanup(); // the backends process, by PID
    for (const wt of worktrees) execFileSync('git', ['worktree', 'remove', '--force', wt], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
