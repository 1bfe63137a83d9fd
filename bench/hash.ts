/**
 * Consistent-hash benchmark for `affinity.mode: hash`: lb's weighted Maglev (src/hash/ring.ts)
 * against a libketama-style ring and plain paper Maglev (M = 65537), both implemented here.
 *
 *   node --import tsx bench/hash.ts [--keys 1000000]
 *
 * Reported per algorithm, on random 32-byte keys hashed with hashKey (MurmurHash3 x86_32; used
 * for every algorithm so that only key placement differs; libketama itself md5s the key):
 *   balance      max/mean keys per backend, 10 equal backends
 *   add 11th     fraction of keys whose owner changes going 10 → 11 (ratio to the ideal 1/11)
 *   remove 1     same for 10 → 9, mean over the 10 possible removals (worst in brackets; ideal 1/10)
 *   1:2:3        largest relative error of the shares of weights 1:2:3 against 1/6, 2/6, 3/6
 *   lookups/s    one core, hashKey(32-byte key) + lookup, median of 5 runs over the key set
 *   rebuild      time to build for 100 equal backends (median of 7)
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hashKey, hashKey2 } from '../src/hash/hash.js';
import { buildHash, type HashMember } from '../src/hash/ring.js';

const args = process.argv.slice(2);
const argKeys = args.indexOf('--keys');
const N_KEYS = argKeys >= 0 ? Number(args[argKeys + 1]) : 1_000_000;

interface Lookup {
  lookup(h: number): string | undefined;
}
interface Algo {
  name: string;
  weights: boolean;
  build(members: HashMember[]): Lookup;
}

// ---- ketama (libketama): 160 points per unit weight, 4 points per md5 digest ---------------
class Ketama implements Lookup {
  private readonly points: Uint32Array;
  private readonly owners: Uint32Array;
  private readonly ids: string[];
  constructor(members: HashMember[]) {
    this.ids = members.map((m) => m.id);
    let total = 0;
    for (const m of members) total += m.weight * 160;
    const packed = new Float64Array(total);
    let n = 0;
    members.forEach((m, idx) => {
      for (let k = 0; k < m.weight * 40; k++) {
        const d = createHash('md5').update(`${m.id}-${k}`).digest();
        for (let j = 0; j < 4; j++) {
          const p = ((d[3 + j * 4] << 24) | (d[2 + j * 4] << 16) | (d[1 + j * 4] << 8) | d[j * 4]) >>> 0;
          packed[n++] = p * 65536 + idx;
        }
      }
    });
    packed.sort();
    this.points = new Uint32Array(n);
    this.owners = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      this.points[i] = Math.floor(packed[i] / 65536);
      this.owners[i] = packed[i] % 65536;
    }
  }
  lookup(h: number): string | undefined {
    const pts = this.points;
    const n = pts.length;
    if (n === 0) return undefined;
    h >>>= 0;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pts[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    return this.ids[this.owners[lo === n ? 0 : lo]];
  }
}

// ---- plain Maglev (paper, Algorithm 1), M = 65537, no weights, backends in given order ------
class PlainMaglev implements Lookup {
  static readonly M = 65537;
  private readonly table: Uint16Array;
  private readonly ids: string[];
  constructor(members: HashMember[]) {
    const M = PlainMaglev.M;
    const n = members.length;
    this.ids = members.map((m) => m.id);
    this.table = new Uint16Array(M).fill(0xffff);
    if (n === 0) return;
    const offset = members.map((m) => hashKey2(m.id, 0xdead) % M);
    const skip = members.map((m) => (hashKey2(m.id, 0xbeef) % (M - 1)) + 1);
    const next = new Uint32Array(n);
    let filled = 0;
    for (;;) {
      for (let i = 0; i < n; i++) {
        let c = (offset[i] + next[i] * skip[i]) % M;
        while (this.table[c] !== 0xffff) {
          next[i]++;
          c = (offset[i] + next[i] * skip[i]) % M;
        }
        this.table[c] = i;
        next[i]++;
        if (++filled === M) return;
      }
    }
  }
  lookup(h: number): string | undefined {
    return this.ids[this.table[(h >>> 0) % PlainMaglev.M]];
  }
}

const ALGOS: Algo[] = [
  { name: 'lb: weighted Maglev (src/hash/ring.ts)', weights: true, build: (m) => buildHash(m) },
  { name: 'ketama (md5, 160 points/weight, bsearch)', weights: true, build: (m) => new Ketama(m) },
  { name: 'Maglev paper, M=65537', weights: false, build: (m) => new PlainMaglev(m) },
];

// ---- helpers ------------------------------------------------------------------------------
const equal = (n: number): HashMember[] => Array.from({ length: n }, (_, i) => ({ id: `backend-${i}`, weight: 1 }));
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];

function owners(l: Lookup, hs: Uint32Array): string[] {
  const out = new Array<string>(hs.length);
  for (let i = 0; i < hs.length; i++) out[i] = l.lookup(hs[i])!;
  return out;
}
function movedFrac(a: string[], b: string[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) m++;
  return m / a.length;
}
function balance(o: string[], n: number): number {
  const c = new Map<string, number>();
  for (const id of o) c.set(id, (c.get(id) ?? 0) + 1);
  return Math.max(...c.values()) / (o.length / n);
}

function timeLookups(l: Lookup, keys: string[]): number {
  let sink = 0;
  const pass = () => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < keys.length; i++) sink += l.lookup(hashKey(keys[i]))!.length;
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  pass(); // warmup
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) runs.push(keys.length / pass());
  if (sink === 42) console.log('');
  return median(runs);
}

// ---- run ----------------------------------------------------------------------------------
const cpu = (() => {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

const ALPH = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const raw = randomBytes(32 * N_KEYS);
const keys = new Array<string>(N_KEYS);
const hs = new Uint32Array(N_KEYS);
for (let i = 0; i < N_KEYS; i++) {
  let s = '';
  for (let j = 0; j < 32; j++) s += ALPH[raw[i * 32 + j] & 63];
  keys[i] = s;
  hs[i] = hashKey(s);
}

// Raw hash speed, for reference (ns per 32-byte key, median of 5 passes after a warmup).
function timeHash(): number {
  let sink = 0;
  for (let i = 0; i < keys.length; i++) sink ^= hashKey(keys[i]);
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < keys.length; i++) sink ^= hashKey(keys[i]);
    runs.push(Number(process.hrtime.bigint() - t0) / keys.length);
  }
  if (sink === 0.5) console.log('');
  return median(runs);
}
const hashNs = timeHash();

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const rows: string[] = [];
for (const algo of ALGOS) {
  const base = owners(algo.build(equal(10)), hs);
  const bal = balance(base, 10);
  const add = movedFrac(base, owners(algo.build([...equal(10), { id: 'backend-10', weight: 1 }]), hs));
  const removals: number[] = [];
  for (let k = 0; k < 10; k++) removals.push(movedFrac(base, owners(algo.build(equal(10).filter((m) => m.id !== `backend-${k}`)), hs)));
  const rem = removals.reduce((s, x) => s + x, 0) / removals.length;
  const remWorst = Math.max(...removals);
  let weighted = 'n/a';
  if (algo.weights) {
    const o = owners(algo.build([1, 2, 3].map((w) => ({ id: `w${w}`, weight: w }))), hs);
    const c = new Map<string, number>();
    for (const id of o) c.set(id, (c.get(id) ?? 0) + 1);
    const err = Math.max(...[1, 2, 3].map((w) => Math.abs((c.get(`w${w}`) ?? 0) / o.length / (w / 6) - 1)));
    weighted = `±${pct(err)}`;
  }
  const lps = timeLookups(algo.build(equal(10)), keys);
  const builds: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    algo.build(equal(100));
    builds.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  rows.push(
    `| ${algo.name} | ${bal.toFixed(4)} | ${pct(add)} (${(add * 11).toFixed(3)}×) | ${pct(rem)} (${(rem * 10).toFixed(3)}×; worst ${(remWorst * 10).toFixed(3)}×) | ${weighted} | ${(lps / 1e6).toFixed(2)} M | ${median(builds).toFixed(2)} ms |`,
  );
}

console.log(`# Consistent hash benchmark\n`);
console.log(`- date: ${new Date().toISOString()}`);
console.log(`- node: ${process.version}`);
console.log(`- cpu: ${cpu}`);
console.log(`- keys: ${N_KEYS.toLocaleString('en-US')} random 32-byte strings, hashKey (MurmurHash3 x86_32): ${hashNs.toFixed(1)} ns/key\n`);
console.log('| algorithm | balance max/mean (10 equal) | add 11th: moved (÷ ideal 1/11) | remove 1 of 10: moved, mean of 10 (÷ ideal 1/10) | weights 1:2:3 max rel. error | lookups/s incl. hashKey (1 core) | rebuild, 100 backends |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
