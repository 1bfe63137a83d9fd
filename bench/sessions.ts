/**
 * The session table under a flood of new sessions (what cookie affinity records for each
 * cookieless request): how long single calls take, and where. Every `touch` is timed on its own;
 * each growth of the table is reported with the slowest call in the 64 calls from it (the move
 * it starts is spread over the following inserts), then every call over --slow ms, with its
 * place in the flood. Then the flood expires and the table is swept in twentieths, as lb's
 * housekeeping timer does, and shrinks.
 *
 *   node --import tsx bench/sessions.ts [--sessions 1200000] [--slow 1]
 *
 * In-process: no HTTP, no other load. A call over --slow ms that is not at a growth is most
 * likely this script's own garbage collection (it holds every id as a string) or V8 tiering up
 * while the loop warms; run with `node --trace-gc` to tell.
 */
import { randomBytes } from 'node:crypto';
import { SessionTable } from '../src/affinity/sessions.js';
import { numberOpt } from './harness.js';

const args = process.argv.slice(2);
const N = numberOpt(args, '--sessions', 1_200_000);
const SLOW = numberOpt(args, '--slow', 1);
const AFTER_GROWTH = 64;
const SWEEP_EVERY = 5000; // sessions between two sweeps of a twentieth (lb: every 250 ms)

const bytes = randomBytes(12 * N);
const ids: string[] = [];
for (let i = 0; i < N; i++) ids.push(bytes.toString('base64url', i * 12, i * 12 + 12));
const backends = ['n1', 'n2', 'n3'];
let now = 0;
const t = new SessionTable(() => now);

const slow: string[] = [];
const floodSweeps: number[] = [];
const growths: string[] = [];
let growthAt = -1;
let growthWorst = 0;
let total = 0;
let worst = { ms: 0, at: 0 };
for (let i = 0; i < N; i++) {
  const slots = t.slots;
  const a = performance.now();
  t.touch(ids[i], backends[i % 3], now + 60_000);
  const ms = performance.now() - a;
  total += ms;
  if (ms > worst.ms) worst = { ms, at: i };
  if (ms > SLOW) slow.push(`${i.toLocaleString('en-US')}: ${ms.toFixed(1)} ms`);
  if (t.slots !== slots) {
    growthAt = i;
    growthWorst = 0;
  }
  if (growthAt >= 0 && i - growthAt < AFTER_GROWTH) {
    growthWorst = Math.max(growthWorst, ms);
    if (i - growthAt === AFTER_GROWTH - 1 || i === N - 1) {
      growths.push(`to ${t.slots.toLocaleString('en-US')} slots at ${growthAt.toLocaleString('en-US')} sessions: slowest of the next ${AFTER_GROWTH} calls ${growthWorst.toFixed(2)} ms`);
    }
  }
  if (i % SWEEP_EVERY === SWEEP_EVERY - 1) {
    now += 250;
    const b = performance.now();
    t.sweep(1 / 20);
    floodSweeps.push(performance.now() - b);
  }
}
console.log(`Node ${process.version}; ${N.toLocaleString('en-US')} new sessions into a table with the default cap (1,000,000)`);
console.log(`mean touch ${((total / N) * 1e6).toFixed(0)} ns; slowest ${worst.ms.toFixed(2)} ms at ${worst.at.toLocaleString('en-US')}; ${t.slots.toLocaleString('en-US')} slots, ${t.size.toLocaleString('en-US')} sessions`);
console.log('growths:');
for (const g of growths) console.log(`  ${g}`);
console.log(`touch calls over ${SLOW} ms (${slow.length}):`);
for (const s of slow) console.log(`  ${s}`);
const spread = (xs: number[]): string => {
  const o = [...xs].sort((x, y) => x - y);
  return `median ${o[o.length >> 1].toFixed(2)} ms, 90th ${o[Math.floor(o.length * 0.9)].toFixed(2)}, slowest ${o[o.length - 1].toFixed(2)} (call ${xs.indexOf(o[o.length - 1]) + 1})`;
};
console.log(`sweeps of a twentieth during the flood (${floodSweeps.length}): ${spread(floodSweeps)}`);

// The flood expires: sweeps of a twentieth drop it, then the table shrinks and moves in parts.
now += 120_000;
const sweeps: number[] = [];
let shrunkAt = 0;
while (sweeps.length < 400 && (t.size > 0 || t.moving > 0 || t.slots > 1024)) {
  const b = performance.now();
  t.sweep(1 / 20);
  sweeps.push(performance.now() - b);
  if (!shrunkAt && t.moving > 0) shrunkAt = sweeps.length;
}
console.log(`expiry: ${sweeps.length} sweeps of a twentieth until empty and shrunk to ${t.slots} slots (the shrink began at call ${shrunkAt}): ${spread(sweeps)}`);

// A whole pass over a table at 2^21 slots with nothing to drop (what a twentieth is a part of).
const u = new SessionTable(() => 0);
for (let i = 0; i < 1_000_000 && i < N; i++) u.touch(ids[i], backends[i % 3], 1e12);
while (u.moving > 0) u.sweep(1 / 20);
const passes: number[] = [];
for (let r = 0; r < 5; r++) {
  const b = performance.now();
  u.sweep(1);
  passes.push(performance.now() - b);
}
console.log(`whole pass with nothing to drop, ${u.slots.toLocaleString('en-US')} slots: ${passes.map((x) => x.toFixed(1)).join(', ')} ms`);
