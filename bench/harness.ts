/**
 * What the benchmarks share: processes started pinned to CPUs and killed by PID on exit, wrk runs
 * and their parsing, CPU and RSS read from /proc, lb started from a YAML config, and the
 * returning-users cookie script. Used by bench/run.ts (side by side) and bench/ab.ts (A/B by commit).
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import http from 'node:http';
import { freePort } from './peers.js';

export const procs: ChildProcess[] = [];
export const extraPids = new Set<number>();

export function children(pid: number): number[] {
  const r = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return (r.stdout || '').split('\n').filter(Boolean).map(Number);
}

export function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of children(pid)) out.push(...descendants(c), c);
  return out;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kill every child we started (and their descendants), by PID. Synchronous: safe in 'exit'. */
export function cleanup(): void {
  const running = procs.filter((p) => p.pid && p.exitCode === null && p.signalCode === null).map((p) => p.pid!);
  killTree([...running, ...extraPids]);
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });

export function pinned(cpus: string, cmd: string, argv: string[], log: string, stdout: 'pipe' | 'log' = 'log'): ChildProcess {
  const fd = openSync(log, 'a');
  const p = spawn('taskset', ['-c', cpus, cmd, ...argv], { stdio: ['ignore', stdout === 'pipe' ? 'pipe' : fd, fd] });
  procs.push(p);
  return p;
}

export function firstLine(p: ChildProcess): Promise<string> {
  return new Promise((res, rej) => {
    let buf = '';
    p.stdout!.on('data', (d: Buffer) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) res(buf.slice(0, nl).trim());
    });
    p.once('exit', (c) => rej(new Error(`exited ${c} before printing a line`)));
  });
}

export function cpuUs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000; // utime+stime in 100 Hz ticks → µs
}

export function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitPort(port: number, p: ChildProcess, log: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`exited ${p.exitCode ?? p.signalCode}: ${tail(log)}`);
    const ok = await new Promise<boolean>((r) =>
      http
        .get({ host: '127.0.0.1', port, path: '/100', agent: false }, (res) => (res.resume(), r(res.statusCode === 200)))
        .on('error', () => r(false)),
    );
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} never answered 200: ${tail(log)}`);
}

export function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  } catch {
    return '';
  }
}

export function version(cmd: string, argv: string[]): string {
  if (!existsSync(cmd)) return 'not installed';
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  return `${r.stdout || ''}${r.stderr || ''}`.trim().split('\n')[0] || 'unknown';
}

export interface Wrk {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

function ms(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
}

export function parseWrk(out: string): Wrk {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const lat = (pct: string) => {
    const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(out);
    return m ? ms(m[1], m[2]) : NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (num(/Non-2xx or 3xx responses: (\d+)/) || 0);
  return { requests: num(/(\d+) requests in/), rps: num(/Requests\/sec:\s+([\d.]+)/), p50: lat('50'), p99: lat('99'), errors };
}

export function runWrk(url: string, seconds: number, script?: string): Promise<string> {
  return startWrk(url, seconds, script).done;
}

/**
 * wrk started on CPU 1; `done` has its output (rejects when it fails). `proc` is wrk itself (taskset
 * execs it). `stopped`: the child stops itself (SIGSTOP) before it execs taskset and wrk, so that
 * it sends nothing until SIGCONT; wait for that with waitStopped().
 */
export function startWrk(url: string, seconds: number, script?: string, stopped = false): { proc: ChildProcess; done: Promise<string> } {
  const extra = script ? ['-s', script] : [];
  const argv = ['-c', '1', '/usr/bin/wrk', '-t1', '-c50', `-d${seconds}s`, '--latency', ...extra, url];
  const p = stopped
    ? spawn('sh', ['-c', 'kill -STOP $$; exec taskset "$@"', 'sh', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('taskset', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  const done = new Promise<string>((res, rej) => {
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), (seconds + 15) * 1000);
    p.once('exit', (code) => {
      clearTimeout(timer);
      procs.splice(procs.indexOf(p), 1);
      if (code === 0) res(out);
      else rej(new Error(`wrk exited ${code}: ${out.trim()}`));
    });
  });
  return { proc: p, done };
}

/** Until `pid` is stopped (state T in /proc), at most `ms`. */
async function waitStopped(pid: number, ms = 2000): Promise<void> {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(5)) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T') return;
  }
  throw new Error(`process ${pid} did not stop itself within ${ms} ms`);
}

// ---- targets -----------------------------------------------------------------------------
export interface Target {
  name: string;
  port: number;
  /** wrk script sending the cookies this target handed out (returning users), made by mintCookies. */
  script?: string;
  /** PIDs whose CPU/RSS count as the proxy's (read fresh before each run). */
  pids: () => number[];
  /** lb only (its admin listener's /metrics): requests answered so far, and how many not 2xx. */
  served?: () => Promise<{ requests: number; errors: number }>;
  note?: string;
}

export interface Sample extends Wrk {
  cpuPerReq?: number;
  rssMiB?: number;
  /** hostProbe() just before the run, ms. */
  probeMs?: number;
  /** The round it was measured in (from 0): a failed run leaves no sample, so a target's samples may skip one. */
  round?: number;
}

/**
 * The probe's work, 7 times, the fastest printed (ms): SHA-256 of 1 MiB and a 16 MiB copy (native
 * code), then a JavaScript loop over an 8 MiB Int32Array like the session table's sweep (the
 * fastest pass is one V8 has optimized). The native part alone missed slowdowns that hit the Node
 * processes more than HAProxy or nginx; in one slow minute the loop read 1.7–2.4× its quiet time
 * where the native part read 1.3–1.5× (bench/RESULTS.md, 2026-11-28).
 */
const PROBE = `const { createHash } = require('node:crypto');
const buf = Buffer.alloc(1 << 20, 7), src = Buffer.alloc(1 << 24, 1), dst = Buffer.alloc(1 << 24);
const exp = new Int32Array(1 << 21).fill(0x7fffffff);
for (let i = 0, x = 1; i < exp.length; i++) { x = (Math.imul(x, 1103515245) + 12345) | 0; if ((x >>> 8) % 100 < 48) exp[i] = 1800 + (i & 1023); }
function sweep(a, now) { let c = 0; for (let i = 0; i < a.length; i++) if (a[i] <= now) c++; return c; }
let best = Infinity;
for (let r = 0; r < 7; r++) {
  const t = process.hrtime.bigint();
  createHash('sha256').update(buf).digest();
  src.copy(dst);
  sweep(exp, 3.5);
  best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);
}
process.stdout.write(String(best));`;

/**
 * How fast the host is right now on CPU 0, where the proxies run: a fixed piece of work timed in
 * a pinned child, in ms (more is slower; the fastest of 7, so that a timer of an idle proxy
 * sharing the core does not read as a slow host). On this shared VM a fixed in-process loop ran
 * up to 2.5× slower in some hours, with little or no steal time and no other process to show for
 * it, and every target's CPU per request rose with it (bench/RESULTS.md, 2026-11-28): runs
 * measured while the probe is slow are not comparable with runs on a quiet host. Before the
 * JavaScript loop was added, the probe missed rounds in which the Node processes alone ran
 * 1.2–1.9× slower (HAProxy and nginx 1.05–1.11×); whether the loop catches every such round is
 * not yet known. NaN when the probe fails (the run is measured anyway).
 */
export function hostProbe(): number {
  try {
    const ms = Number(execFileSync('taskset', ['-c', '0', process.execPath, '-e', PROBE], { encoding: 'utf8', timeout: 10_000 }));
    return ms > 0 ? ms : NaN;
  } catch {
    return NaN;
  }
}

export function lbYaml(port: number, bports: number[], dir: string, workers: string, affinity: string, adminPort?: number): string {
  return `workers: ${workers}
listeners: [ { name: web, host: 127.0.0.1, port: ${port}, pool: app } ]
pools:
  app:
    affinity: ${affinity}
    balance: round-robin
    backends: [ ${bports.map((p, i) => `{ id: n${i + 1}, url: "http://127.0.0.1:${p}" }`).join(', ')} ]
admin: ${adminPort ? `{ enabled: true, host: 127.0.0.1, port: ${adminPort} }` : '{ enabled: false }'}
state: { file: "${dir}/state.json" }
log: { level: warn }
`;
}

export const COOKIE_AFFINITY = '{ mode: cookie, cookie: { secrets: ["bench-secret-value"] } }';

/** One lb process on `cpus` (its PIDs include cluster workers). */
export async function startLb(dir: string, bports: number[], tag: string, workers: string, affinity: string, cpus: string, name = tag, note?: string, entry = resolve('dist/cli/main.js'), nodeArgs: string[] = []): Promise<Target> {
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  const sub = join(dir, tag);
  execFileSync('mkdir', ['-p', sub]);
  writeFileSync(join(sub, 'lb.yaml'), lbYaml(port, bports, sub, workers, affinity, adminPort));
  const log = join(dir, `${tag}.log`);
  const p = pinned(cpus, process.execPath, [...nodeArgs, entry, 'start', '-c', join(sub, 'lb.yaml')], log);
  const pids = (): number[] => [p.pid!, ...descendants(p.pid!)];
  try {
    await waitPort(port, p, log);
    // The admin listener opens after the proxy's: the request count (bench:ab --alternate) is read there.
    for (let i = 0; !(await served(adminPort).then(() => true, () => false)); i++) {
      if (i === 100) throw new Error(`admin port ${adminPort} never served /metrics: ${tail(log)}`);
      await sleep(50);
    }
  } catch (e) {
    killTree(pids()); // alive but not answering: stopped here, not left running through the rounds after
    throw e;
  }
  return { name, port, pids, note, served: () => served(adminPort) };
}

/** Requests lb has answered, and how many of them not 2xx, from its /metrics (lb_requests_total). */
async function served(adminPort: number): Promise<{ requests: number; errors: number }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`lb /metrics: ${res.status}`);
  let requests = 0;
  let errors = 0;
  for (const m of (await res.text()).matchAll(/^lb_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const n = Number(m[2]);
    requests += n;
    if (!m[1].includes('status_class="2xx"')) errors += n;
  }
  return { requests, errors };
}


/** The three Node backends (one process, CPU 1, started by `bench/run.ts backends`): their ports. */
export async function startBackends(dir: string): Promise<number[]> {
  const be = pinned('1', process.execPath, ['--import', 'tsx', resolve('bench/run.ts'), 'backends'], join(dir, 'backends.log'), 'pipe');
  return JSON.parse(await firstLine(be)) as number[];
}

/** The Node floor (bench/proxies/floor.cjs) on CPU 0: bytes passed through, llhttp only for framing. */
export async function startFloor(dir: string, bports: number[], tag = 'floor', note?: string): Promise<Target> {
  const port = await freePort();
  const log = join(dir, `${tag}.log`);
  const p = pinned('0', process.execPath, [resolve('bench/proxies/floor.cjs'), String(port), ...bports.map((b) => `http://127.0.0.1:${b}`)], log);
  await waitPort(port, p, log);
  return { name: 'node floor', port, pids: () => [p.pid!], note };
}

/**
 * SIGKILL these processes and their descendants. All are stopped (SIGSTOP) first: killed one by
 * one, a parent could replace a child killed before it (an nginx master forks a new worker when
 * one dies), and that new worker, not in the list, outlived the run.
 */
export function killTree(pids: number[]): void {
  const all = new Set([...pids.flatMap((p) => descendants(p)), ...pids]);
  for (const signal of ['SIGSTOP', 'SIGKILL'] as const) {
    for (const pid of all) {
      try {
        if (alive(pid)) process.kill(pid, signal);
      } catch {
        /* gone */
      }
    }
  }
}

/** A numeric command-line option (`--name N`), or `def`. */
export function numberOpt(args: readonly string[], name: string, def: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : NaN;
  return Number.isFinite(v) && v >= 0 ? v : def; // 0 is a value (--paired-rounds 0: no paired rounds)
}

/** Busy ticks of the whole machine (/proc/stat) and of everything this benchmark runs. */
export function ticks(): { machine: number; ours: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const machine = f[0] + f[1] + f[2] + f[5] + f[6]; // user nice system irq softirq
  // Ourselves plus reaped children (wrk), then every live child and its descendants.
  const self = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  let ours = Number(self[11]) + Number(self[12]) + Number(self[13]) + Number(self[14]);
  const pids = new Set<number>(extraPids);
  for (const p of procs) if (p.pid && p.exitCode === null) [p.pid, ...descendants(p.pid)].forEach((x) => pids.add(x));
  for (const pid of pids) {
    try {
      ours += cpuUs(pid) / 10_000;
    } catch {
      /* exited */
    }
  }
  return { machine, ours, steal: f[7] };
}

/**
 * Returning users: 1,000 cookieless GETs collect the cookies the target hands out, then a wrk
 * script sends one of them with each request, in turn (a target that sets no cookie gets a
 * neutral one, so every target parses the same header).
 */
export async function mintCookies(t: Target, dir: string, n = 1000): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const cookies: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const sc = await new Promise<string[] | undefined>((res, rej) =>
        http.get({ host: '127.0.0.1', port: t.port, path: '/100', agent }, (r) => (r.resume(), r.on('end', () => res(r.headers['set-cookie'])))).on('error', rej),
      );
      if (sc?.[0]) cookies.push(sc[0].split(';')[0]);
    }
  } finally {
    agent.destroy();
  }
  if (!cookies.length) cookies.push('session=returning-user');
  const script = join(dir, `cookies-${t.name.replace(/[^a-z0-9]+/gi, '-')}-${t.port}.lua`); // the port: two targets may share a name (bench:ab --paired A A)
  writeFileSync(
    script,
    `local cookies = { ${cookies.map((c) => JSON.stringify(c)).join(', ')} }
local i = 0
request = function()
  i = i + 1
  if i > #cookies then i = 1 end
  return wrk.format(nil, nil, { ["Cookie"] = cookies[i] })
end
`,
  );
  t.script = script;
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const fmt = (x: number | undefined, d: number) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));

/**
 * Start each target, load them all at once (one wrk each, on CPU 1), and return each one's CPU µs
 * per request (NaN where no requests were counted) and its error count. With two lbs both pinned
 * to CPU 0 this is a paired run: both see the same host at the same moment, so their ratio holds
 * still where the host's speed drifts between runs (bench/ab.ts --paired; bench/run.ts, cookie
 * over none). Sharing the core, each lb also evicts the other's code and data from the caches
 * between its time slices, which the issue's setup (one proxy alone on its core) does not have.
 *
 * With `alternateMs`, the targets (lbs: their /metrics count the requests) take turns instead:
 * every wrk is started, all but one stopped (SIGSTOP), and the one running changes every
 * `alternateMs` (SIGSTOP the one, SIGCONT the next), `firstTurn` first, until each has had
 * `seconds` of turns. Each lb is then alone on CPU 0 while it serves (the others idle, with no
 * load), and the turns are short enough that a drift of the host's speed falls on all alike.
 * Every wrk stops itself before it execs and sends nothing until its first turn. After the last
 * turn every wrk is stopped; after 200 ms (the requests in flight answered) each lb's CPU and its
 * count of requests answered are read: the window is the same for all, with no wrk's start or
 * end in it alone. Then the wrks run out their time (2 s past the turns) and their summaries'
 * errors count too. Every wrk has ended and every target is stopped when it returns or throws.
 */
export async function measureTogether(
  starts: Array<(tag: string) => Promise<Target>>,
  o: { dir: string; tag: string; path: string; returning: boolean; seconds: number; labels: string[]; alternateMs?: number; firstTurn?: number },
): Promise<Array<{ us: number; errors: number; requests: number }>> {
  const ts: Target[] = [];
  const cpu = (t: Target): number => t.pids().reduce((a, pid) => a + cpuUs(pid), 0);
  /** wrk on every target at once; throws after all have ended if any failed (none left running into the next round). */
  const together = async (seconds: number): Promise<string[]> => {
    const settled = await Promise.allSettled(ts.map((t) => runWrk(`http://127.0.0.1:${t.port}${o.path}`, seconds, t.script)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((r) => (r as PromiseFulfilledResult<string>).value);
  };
  /** The targets in turns of `ms`, `seconds` each; CPU µs and requests answered per target, over the same window. */
  const inTurns = async (seconds: number, ms: number): Promise<Array<{ us: number; errors: number; requests: number }>> => {
    const counters = ts.map((t) => {
      if (!t.served) throw new Error(`${t.name}: taking turns needs lb's own count of requests (its /metrics)`);
      return t.served;
    });
    const servedBefore = await Promise.all(counters.map((f) => f()));
    const cpuBefore = ts.map(cpu);
    const turns = Math.max(1, Math.round((seconds * 1000) / ms)) * ts.length;
    // Every wrk stopped before it sends anything, then woken in turns. Each runs 2 s longer than
    // all the turns take, so none ends inside the window; after it, each is let run out its time
    // and print its summary (SIGINT is no way to end wrk early: a signal that reaches its worker
    // thread stops the load, but the main thread still sleeps out -d before it prints).
    const duration = Math.ceil((turns * ms) / 1000) + 2;
    const wrks = ts.map((t) => startWrk(`http://127.0.0.1:${t.port}${o.path}`, duration, t.script, true));
    const outputs = wrks.map((w) => w.done.then((out) => ({ out }), (e: Error) => ({ err: e })));
    const live = (i: number) => wrks[i].proc.exitCode === null && wrks[i].proc.signalCode === null;
    const signal = (i: number, sig: NodeJS.Signals) => {
      if (live(i)) wrks[i].proc.kill(sig);
    };
    try {
      for (const w of wrks) await waitStopped(w.proc.pid!);
      let active = (o.firstTurn ?? 0) % ts.length;
      signal(active, 'SIGCONT');
      await new Promise<void>((done) => {
        let turn = 1;
        const timer = setInterval(() => {
          signal(active, 'SIGSTOP');
          if (turn++ === turns) {
            clearInterval(timer);
            done();
            return;
          }
          active = (active + 1) % ts.length;
          signal(active, 'SIGCONT');
        }, ms);
      });
      await sleep(200); // the requests in flight when each wrk stopped: answered, and counted
      const cpuAfter = ts.map(cpu);
      const servedAfter = await Promise.all(counters.map((f) => f()));
      // Then each wrk runs out its time and prints its summary: its socket errors and non-2xx
      // answers count, as in a paired round (lb's own count misses what it answers before it
      // picks a backend, and connection errors).
      const stillRunning = ts.map((_, i) => live(i));
      for (let i = 0; i < wrks.length; i++) signal(i, 'SIGCONT');
      const summaries = await Promise.race([Promise.all(outputs), sleep((duration + 10) * 1000).then(() => undefined)]);
      if (!summaries) throw new Error(`wrk did not end within ${duration + 10} s`);
      return ts.map((_, i) => {
        const sum = summaries[i];
        if ('err' in sum || !stillRunning[i]) throw new Error(`${o.labels[i]}: wrk ended during its turns: ${'err' in sum ? sum.err.message : 'no summary'}`);
        const requests = servedAfter[i].requests - servedBefore[i].requests;
        const errors = Math.max(servedAfter[i].errors - servedBefore[i].errors, parseWrk(sum.out).errors);
        return { us: requests > 0 ? (cpuAfter[i] - cpuBefore[i]) / requests : NaN, errors, requests };
      });
    } finally {
      for (const w of wrks) w.proc.kill('SIGKILL'); // when still there (also when stopped)
      await Promise.all(outputs);
    }
  };
  try {
    // The target that goes first (taking turns) is also started first, and `firstTurn` goes round
    // by round, paired too: in the first A/A rounds taking turns, the lb started second served ~2 %
    // cheaper (bench/RESULTS.md, 2026-11-29; why was not found), so both orders come up alike.
    const first = (o.firstTurn ?? 0) % starts.length;
    for (let k = 0; k < starts.length; k++) {
      const i = (first + k) % starts.length;
      ts[i] = await starts[i](`${o.tag}-${i}`);
    }
    if (o.returning) for (const t of ts) await mintCookies(t, o.dir);
    await together(2); // warm-up
    if (o.alternateMs) {
      const ms = await inTurns(o.seconds, o.alternateMs);
      for (const [i, m] of ms.entries()) {
        if (m.errors) console.error(`${o.labels[i]}: ${m.errors} answers not 2xx`);
        if (!(m.requests > 0)) console.error(`${o.labels[i]}: no requests answered in its turns`);
      }
      return ms;
    }
    const before = ts.map(cpu);
    const outs = await together(o.seconds);
    const after = ts.map(cpu);
    const ws = outs.map(parseWrk);
    for (const [i, w] of ws.entries()) {
      if (w.errors) console.error(`${o.labels[i]}: ${w.errors} errors`);
      // The round counts as missing (NaN: left out of the medians, and of the paired ratio); say why.
      if (!(w.requests > 0)) console.error(`${o.labels[i]}: no requests counted in wrk's output:\n${outs[i].trim().split('\n').slice(-6).join('\n')}`);
    }
    return ws.map((w, i) => ({ us: w.requests > 0 ? (after[i] - before[i]) / w.requests : NaN, errors: w.errors, requests: w.requests }));
  } finally {
    killTree(ts.flatMap((t) => t.pids()));
  }
}
