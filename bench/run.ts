/**
 * Side-by-side HTTP proxy benchmark on a 2-core machine. Every proxy is pinned to CPU 0; the
 * load generator (wrk) and the three Node backends (one process) share CPU 1. Targets:
 *   direct · lb workers:1 (cookie affinity) · lb affinity none · lb workers:auto (unpinned, CPUs 0,1)
 *   · haproxy 1 thread (cookie insert) · nginx 1 worker (keepalive upstream) · npm http-proxy
 *   · the Node floor (bench/proxies/floor.cjs: bytes passed through, llhttp only for framing)
 * Per run: wrk -t1 -c50 --latency on /100 (no cookies: every request a new session), /100 with
 * returning users (a wrk script sends back 1,000 cookies the target issued) and /16k, after a 1 s
 * uncounted warm-up (and, before the first round, `--warmup` seconds of load per target and
 * scenario: lb's JavaScript is compiled while it runs); rounds are interleaved (A B C … A B C …). Reported: medians over rounds of
 * req/s, p50, p99, proxy CPU µs per request (utime+stime from /proc), max RSS, total errors, CPU
 * relative to HAProxy, the machine's other load and steal time, a probe of the host's speed before
 * each run (hostProbe: this shared VM's speed drifts, by up to 2.5× with little in /proc to show
 * it); then cookie affinity over mode none, paired (lb none and lb cookie loaded at once, both on
 * CPU 0: `--paired-rounds` rounds of `--paired-seconds` on /100, without and with cookies), and the
 * same rounds alternating (the two lbs take turns of `--alternate-ms`, each alone on CPU 0 while it
 * serves; 0: not run); then lb's RSS over 1,000,000 requests (returning users, then no cookies).
 *
 *   node --import tsx bench/run.ts [--seconds 8] [--rounds 3] [--warmup 5] [--paired-rounds 8] [--paired-seconds 5] [--alternate-ms 250] [--memory-requests 1000000]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ensurePeers, freePort } from './peers.js';
import {
  COOKIE_AFFINITY, alive, children, cleanup, cpuUs, extraPids, fmt, hostProbe, measureTogether, median, mintCookies, numberOpt, parseWrk, pinned,
  rssKiB, runWrk, startBackends, startFloor, startLb, ticks, version, waitPort, type Sample, type Target,
} from './harness.js';

const args = process.argv.slice(2);

async function startTargets(dir: string, bports: number[]): Promise<Target[]> {
  const targets: Target[] = [{ name: 'direct', port: bports[0], pids: () => [] }];

  const tryStart = async (name: string, fn: () => Promise<Target>): Promise<void> => {
    try {
      targets.push(await fn());
    } catch (e) {
      console.error(`skipped: ${name}: ${(e as Error).message}`);
      skipped.push(`${name} (${(e as Error).message.split('\n')[0].slice(0, 160)})`);
    }
  };

  const lb = (name: string, tag: string, workers: string, affinity: string, cpus: string, note?: string) =>
    tryStart(name, () => startLb(dir, bports, tag, workers, affinity, cpus, name, note));

  await lb('lb workers:1', 'lb1', '1', COOKIE_AFFINITY, '0');
  await lb('lb workers:1, affinity none', 'lbnone', '1', '{ mode: none }', '0');
  await lb('lb workers:auto', 'lbauto', 'auto', COOKIE_AFFINITY, '0,1', 'unpinned (CPUs 0,1, shared with wrk + backends); CPU = primary + workers');

  await tryStart('haproxy', async () => {
    if (!existsSync('/usr/sbin/haproxy')) throw new Error('/usr/sbin/haproxy not installed');
    const port = await freePort();
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse safe
frontend fe
  bind 127.0.0.1:${port}
  default_backend app
backend app
  balance roundrobin
  cookie SRV insert indirect nocache
${bports.map((p, i) => `  server s${i + 1} 127.0.0.1:${p} cookie s${i + 1}`).join('\n')}
`,
    );
    const log = join(dir, 'haproxy.log');
    const p = pinned('0', '/usr/sbin/haproxy', ['-f', cfg, '-db'], log);
    await waitPort(port, p, log);
    return { name: 'haproxy', port, pids: () => [p.pid!] };
  });

  await tryStart('nginx', async () => {
    if (!existsSync('/usr/sbin/nginx')) throw new Error('/usr/sbin/nginx not installed');
    const port = await freePort();
    const cfg = join(dir, 'nginx.conf');
    writeFileSync(
      cfg,
      `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx.err warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path ${dir}/ngx-body; proxy_temp_path ${dir}/ngx-proxy;
  fastcgi_temp_path ${dir}/ngx-fcgi; uwsgi_temp_path ${dir}/ngx-uwsgi; scgi_temp_path ${dir}/ngx-scgi;
  upstream app {
    hash $remote_addr consistent;
${bports.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
    );
    const log = join(dir, 'nginx.log');
    const p = pinned('0', '/usr/sbin/nginx', ['-c', cfg, '-e', join(dir, 'nginx.err'), '-g', 'daemon off;'], log);
    await waitPort(port, p, log);
    const workers = children(p.pid!);
    if (!workers.length) throw new Error('no nginx worker process found');
    for (const w of workers) extraPids.add(w); // nginx workers outlive a SIGKILLed master
    return { name: 'nginx', port, pids: () => children(p.pid!), note: 'worker process only; hash $remote_addr → one backend' };
  });

  await tryStart('http-proxy', async () => {
    const port = await freePort();
    const log = join(dir, 'http-proxy.log');
    const p = pinned('0', process.execPath, [resolve('bench/proxies/http-proxy.cjs'), String(port), ...bports.map((b) => `http://127.0.0.1:${b}`)], log);
    await waitPort(port, p, log);
    return { name: 'http-proxy', port, pids: () => [p.pid!] };
  });

  await tryStart('node floor', () => startFloor(dir, bports, 'floor', 'not a proxy: bytes passed through, llhttp only for framing (bench/proxies/floor.cjs)'));
  return targets;
}

const skipped: string[] = [];
const foreign: number[] = [];
/** Share of one CPU the hypervisor took from this VM (steal time) during each measured run. */
const steal: number[] = [];

interface Scenario {
  key: string;
  path: string;
  returning: boolean;
  title: string;
}

const SCENARIOS: Scenario[] = [
  { key: '/100', path: '/100', returning: false, title: 'GET 100-byte body (/100), no cookies: every request is a new session' },
  { key: '/100 returning', path: '/100', returning: true, title: 'GET 100-byte body (/100), returning users: each request carries one of 1,000 cookies the target issued' },
  { key: '/16k', path: '/16k', returning: false, title: 'GET 16 KiB body (/16k), no cookies' },
];

async function measure(t: Target, sc: Scenario, seconds: number): Promise<Sample> {
  const url = `http://127.0.0.1:${t.port}${sc.path}`;
  const script = sc.returning ? t.script : undefined;
  const probeMs = hostProbe();
  await runWrk(url, 1, script); // warm-up, not counted
  const pids = t.pids();
  const k0 = ticks();
  const c0 = pids.map(cpuUs);
  const w = parseWrk(await runWrk(url, seconds, script));
  const c1 = pids.map(cpuUs);
  const k1 = ticks();
  // Share of one CPU used by processes that are not part of this benchmark during the run.
  foreign.push(Math.max(0, k1.machine - k0.machine - (k1.ours - k0.ours)) / (seconds * 100));
  steal.push((k1.steal - k0.steal) / (seconds * 100));
  if (!pids.length) return { ...w, probeMs };
  const dCpu = c1.reduce((a, b) => a + b, 0) - c0.reduce((a, b) => a + b, 0);
  const rss = t.pids().reduce((a, pid) => a + (alive(pid) ? rssKiB(pid) : 0), 0);
  return { ...w, cpuPerReq: dCpu / w.requests, rssMiB: rss / 1024, probeMs };
}

/**
 * The host probe over the run: how much slower than its fastest the host was before each measured
 * run, per round and scenario (the slowest probe among that round's targets).
 */
function probeReport(samples: Map<string, Sample[]>, rounds: number): string[] {
  const all = [...samples.values()].flat().map((s) => s.probeMs ?? NaN).filter(Number.isFinite);
  if (!all.length) return [];
  const best = Math.min(...all);
  const slowest = Math.max(...all);
  const cells = SCENARIOS.map((sc) =>
    Array.from({ length: rounds }, (_, r) => {
      const ps = [...samples].filter(([k]) => k.endsWith(` ${sc.key}`)).map(([, ss]) => ss.find((s) => s.round === r)?.probeMs ?? NaN).filter(Number.isFinite);
      return ps.length ? `${(Math.max(...ps) / best).toFixed(2)}×` : '–';
    }).join(', '),
  );
  const slow = all.filter((x) => x > best * 1.2).length;
  return [
    `Host probe (a fixed piece of work on CPU 0 before each measured run, bench/harness.ts hostProbe): fastest ${best.toFixed(2)} ms, slowest ${slowest.toFixed(2)} ms (${(slowest / best).toFixed(2)}×); ` +
      `the slowest probe of each round's targets, against the fastest: ${SCENARIOS.map((sc, i) => `${sc.key} ${cells[i]}`).join('; ')}. ` +
      (slow ? `${slow} of ${all.length} runs had a probe over 1.2× the fastest: the host was slower then, and CPU per request in those runs may be inflated.` : `No run had a probe over 1.2× the fastest.`) +
      ' Before its JavaScript loop was added, the probe missed slowdowns that hit the Node processes more than HAProxy and nginx (bench/RESULTS.md, 2026-11-28); a quiet probe is not proof of a quiet host.',
  ];
}

async function main(): Promise<void> {
  const opt = (name: string, def: number) => numberOpt(args, name, def);
  const seconds = opt('--seconds', 8);
  const rounds = opt('--rounds', 3);
  const warmup = opt('--warmup', 5);
  const memRequests = opt('--memory-requests', 1_000_000);
  const pairedRounds = opt('--paired-rounds', 8);
  const pairedSeconds = opt('--paired-seconds', 5);
  const alternateMs = opt('--alternate-ms', 250);
  ensurePeers([
    { bin: '/usr/sbin/haproxy', pkg: 'haproxy' },
    { bin: '/usr/sbin/nginx', pkg: 'nginx-light' },
    { bin: '/usr/bin/wrk', pkg: 'wrk' },
  ]);
  if (!existsSync('/usr/bin/wrk')) throw new Error('wrk is required (apt-get install wrk)');
  if (!existsSync('dist/cli/main.js')) execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });

  const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  if (Number(loadBefore.split(' ')[0]) > 0.5) console.error(`warning: load average ${loadBefore} before the run: something else is using the CPUs`);
  const dir = mkdtempSync(join(tmpdir(), 'lb-bench-run-'));
  try {
    const bports = await startBackends(dir);
    const targets = await startTargets(dir, bports);

    for (const t of targets) await mintCookies(t, dir);
    // Warm every target up before the first round, on every scenario, uncounted. V8 compiles lb's
    // code as it runs, on the one CPU lb is pinned to: a fresh lb's first 8 s under load had a p99
    // 4–18× that of the 8 s after (bench/RESULTS.md, 2026-11-28). HAProxy and nginx get the same.
    if (warmup > 0) for (const sc of SCENARIOS) for (const t of targets) await runWrk(`http://127.0.0.1:${t.port}${sc.path}`, warmup, sc.returning ? t.script : undefined);
    const samples = new Map<string, Sample[]>();
    const t0 = Date.now();
    for (let r = 0; r < rounds; r++)
      for (const sc of SCENARIOS)
        for (const t of targets) {
          const size = sc.key;
          try {
            const s = { ...(await measure(t, sc, seconds)), round: r };
            (samples.get(`${t.name} ${size}`) ?? samples.set(`${t.name} ${size}`, []).get(`${t.name} ${size}`)!).push(s);
            console.error(
              `round ${r + 1}/${rounds} ${size} ${t.name}: ${Math.round(s.rps)} req/s, p99 ${fmt(s.p99, 2)} ms, ${fmt(s.cpuPerReq, 1)} µs/req, errors ${s.errors}, other load ${(foreign[foreign.length - 1] * 100).toFixed(0)}% CPU, steal ${(steal[steal.length - 1] * 100).toFixed(0)}%, host probe ${fmt(s.probeMs, 2)} ms`,
            );
          } catch (e) {
            console.error(`round ${r + 1} ${size} ${t.name}: failed: ${(e as Error).message}`);
          }
        }

    // Cookie affinity over mode none, paired: a fresh lb of each, both pinned to CPU 0 and loaded
    // at once (one wrk each), so both see the host at the same moment. The interleaved rounds above
    // put 8 s and several targets between the two, and this host's speed drifts by more than the
    // 5 % bar between them (their cookie-over-none medians swung from -15 to +15 %).
    // Both lbs are fresh each round: a cookieless round leaves the cookie lb's session table far
    // below its cap, where an insert cost ~0.5 µs less in-process (651 against 1,148 ns at the
    // cap, which evicts first: bench/RESULTS.md).
    // And alternating (alternateMs > 0): the two lbs take turns, each alone on CPU 0 while it
    // serves, as in the issue's setup, where sharing the core at once lets each evict the other's
    // caches. A paired and an alternating round back to back (which first goes round), so both
    // ways see the same hour of this host; which lb starts (and goes) first goes round too.
    const pairs: Array<{ key: string; title: string; how: 'paired' | 'alternating'; ratios: number[]; failed: number }> = [];
    const hows = alternateMs > 0 ? (['paired', 'alternating'] as const) : (['paired'] as const);
    for (const sc of pairedRounds > 0 ? SCENARIOS.filter((x) => x.path === '/100') : []) {
      const rows = hows.map((how) => ({ key: sc.key, title: sc.title, how, ratios: [] as number[], failed: 0 }));
      pairs.push(...rows);
      for (let r = 0; r < pairedRounds; r++)
        for (let k = 0; k < rows.length; k++) {
          const row = rows[(r + k) % rows.length];
          const round = `${row.how} ${r + 1}/${pairedRounds} ${sc.key}`;
          try {
            const [none, cookie] = await measureTogether(
              [(tag) => startLb(dir, bports, tag, '1', '{ mode: none }', '0'), (tag) => startLb(dir, bports, tag, '1', COOKIE_AFFINITY, '0')],
              { dir, tag: `${row.how}-${sc.returning ? 'returning' : 'new'}-${r}`, path: sc.path, returning: sc.returning, seconds: pairedSeconds, labels: ['lb none', 'lb cookie'], alternateMs: row.how === 'alternating' ? alternateMs : undefined, firstTurn: r % 2 },
            );
            const ratio = cookie.us / none.us;
            // A round with errors (or no requests counted) is not a measurement of the same work: left out, and counted as failed.
            const ok = Number.isFinite(ratio) && none.errors + cookie.errors === 0;
            if (ok) row.ratios.push(ratio);
            else row.failed++;
            console.error(`${round}: lb cookie ${fmt(cookie.us, 1)}, lb none ${fmt(none.us, 1)} µs/req: cookie ${fmt((ratio - 1) * 100, 1)} % over none${ok ? '' : ` (left out: ${none.errors + cookie.errors} errors)`}`);
          } catch (e) {
            row.failed++;
            console.error(`${round}: failed: ${(e as Error).message}`);
          }
        }
    }

    // Memory over 1,000,000 requests, returning users then a cookieless flood (every request a
    // new session: the session table grows until its cap), one lb workers:1 process each.
    const memory: Array<{ label: string; points: Array<{ requests: number; rssMiB: number }> }> = [];
    for (const returning of [true, false]) {
      const label = `${memRequests.toLocaleString('en-US')} requests, ${returning ? 'returning users' : 'no cookies'}`;
      try {
        const t = await startLb(dir, bports, `mem-${returning ? 'returning' : 'new'}`, '1', COOKIE_AFFINITY, '0');
        if (returning) await mintCookies(t, dir);
        const points = [{ requests: 0, rssMiB: rssKiB(t.pids()[0]) / 1024 }];
        let total = 0;
        while (total < memRequests) {
          const w = parseWrk(await runWrk(`http://127.0.0.1:${t.port}/100`, 8, returning ? t.script : undefined));
          total += w.requests;
          points.push({ requests: total, rssMiB: rssKiB(t.pids()[0]) / 1024 });
          console.error(`memory (${label}): ${total} requests, RSS ${points.at(-1)!.rssMiB.toFixed(1)} MiB`);
        }
        memory.push({ label, points });
        for (const pid of t.pids()) process.kill(pid, 'SIGTERM');
      } catch (e) {
        console.error(`memory run (${label}) failed: ${(e as Error).message}`);
      }
    }

    const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
    const cores = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;
    const out: string[] = [
      `Date: ${new Date().toISOString()}  `,
      `Node ${process.version}; ${version('/usr/sbin/haproxy', ['-v'])}; ${version('/usr/sbin/nginx', ['-v'])}; ${version('/usr/bin/wrk', ['-v'])}; http-proxy ${JSON.parse(readFileSync('node_modules/http-proxy/package.json', 'utf8')).version}  `,
      `CPU: ${cpuModel}, ${cores} cores; load average before the run: ${loadBefore}  `,
      `Pinning: each proxy on CPU 0 (taskset -c 0) except lb workers:auto (taskset -c 0,1); wrk (-t1 -c50, --latency) and the 3 Node backends (one process) on CPU 1.  `,
      `${rounds} rounds × ${seconds} s per run (after a 1 s uncounted warm-up; before the first round, ${warmup} s of load per target and scenario), targets interleaved; medians over rounds; RSS is the max after any run; errors are totals (socket errors + non-2xx). ` +
        `Without cookies every request is a new session, so cookie-affinity proxies (lb cookie, haproxy) set a cookie on every response (lb also signs it and counts the session); ` +
        `with returning users each request carries a cookie the target issued earlier (1,000 of them, sent in turn by a wrk script).`,
    ];
    if (skipped.length) out.push('', ...skipped.map((s) => `skipped: ${s}`));
    for (const sc of SCENARIOS) {
      const size = sc.key;
      const stat = (name: string) => {
        const ss = samples.get(`${name} ${size}`) ?? [];
        return {
          n: ss.length,
          rps: median(ss.map((s) => s.rps)),
          p50: median(ss.map((s) => s.p50)),
          p99: median(ss.map((s) => s.p99)),
          cpu: median(ss.map((s) => s.cpuPerReq ?? NaN)),
          rss: ss.some((s) => s.rssMiB !== undefined) ? Math.max(...ss.map((s) => s.rssMiB ?? 0)) : NaN,
          errors: ss.reduce((a, s) => a + s.errors, 0),
        };
      };
      const ha = stat('haproxy').cpu;
      out.push(
        '',
        `### ${sc.title}`,
        '',
        '| target | req/s | p50 ms | p99 ms | CPU µs/req | CPU vs HAProxy | max RSS MiB | errors | note |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---|',
        ...targets.map((t) => {
          const s = stat(t.name);
          const note = [t.note, s.n < rounds ? `${s.n}/${rounds} runs succeeded` : ''].filter(Boolean).join('; ');
          return `| ${t.name} | ${fmt(s.rps, 0)} | ${fmt(s.p50, 2)} | ${fmt(s.p99, 2)} | ${fmt(s.cpu, 1)} | ${Number.isFinite(s.cpu) && Number.isFinite(ha) ? `${(s.cpu / ha).toFixed(2)}×` : '–'} | ${fmt(s.rss, 1)} | ${s.errors} | ${note} |`;
        }),
      );
      // The issue's bars, from this run's medians.
      const lb1 = stat('lb workers:1');
      const none = stat('lb workers:1, affinity none');
      const hp = stat('http-proxy');
      out.push(
        '',
        `lb workers:1 (cookie): ${fmt(lb1.cpu, 1)} µs/req = ${fmt(lb1.cpu / ha, 2)}× HAProxy's CPU, ${fmt(hp.cpu / lb1.cpu, 2)}× leaner than http-proxy; ` +
          `p99 ${fmt(lb1.p99 / stat('haproxy').p99, 2)}× HAProxy's; cookie affinity costs ${fmt((lb1.cpu / none.cpu - 1) * 100, 1)}% over mode none in these medians${sc.path === '/100' ? " (paired and alternating, where the host's drift cancels: below)" : ''}; ` +
          `the Node floor costs ${fmt(stat('node floor').cpu, 1)} µs/req (lb, mode none, ${fmt(none.cpu - stat('node floor').cpu, 1)} µs above it).`,
      );
    }
    if (pairs.length) {
      const pct = (x: number) => `${x >= 1 ? '+' : ''}${fmt((x - 1) * 100, 1)} %`;
      out.push(
        '',
        '### Cookie affinity over mode none, paired and alternating: lb workers:1, both on CPU 0',
        '',
        `Each round starts a fresh lb of each (mode none, cookie affinity), both pinned to CPU 0, one wrk each on CPU 1, 2 s of warm-up with both loaded at once. ` +
          `**Paired**: both loaded at once for ${pairedSeconds} s. **Alternating**: one wrk runs while the other is stopped (SIGSTOP), the two swapped every ${alternateMs} ms until each has had ${pairedSeconds} s, ` +
          `so each lb is alone on the core while it serves, as in the issue's setup; requests are counted by each lb's /metrics over the same window, errors by wrk and lb. ` +
          `Lb none is started (and goes) first in odd rounds, lb cookie in even ones; each paired round and alternating round run back to back, which first going round. The figure is cookie's CPU µs per request over none's in the same round. In both, the host's drift falls on the two alike. ` +
          `Paired, each lb also finds the other's code and data in the core's caches after each of its time slices, which the issue's setup does not have. ` +
          `Being fresh, the cookie lb's session table stays far below its cap in a round without cookies (tens of thousands of sessions, against the cap of 1,000,000 the tables above approach), ` +
          `where inserting a new session costs less (in-process, 651 ns against 1,148 at the cap). A round with errors is left out.`,
        '',
        '| scenario | how | rounds measured | cookie over none, each round | median | rounds ≤ +5 % |',
        '|---|---|---:|---|---:|---:|',
        ...pairs.map((p) => `| ${p.title} | ${p.how} | ${p.ratios.length}/${p.ratios.length + p.failed} | ${p.ratios.map(pct).join(', ') || 'none'} | **${p.ratios.length ? pct(median(p.ratios)) : '–'}** | ${p.ratios.filter((x) => x <= 1.05).length} |`),
      );
    }
    if (memory.length) {
      out.push(
        '',
        `### Memory: lb workers:1, cookie affinity, ${memRequests.toLocaleString('en-US')} requests`,
        '',
        `RSS of the lb process after each chunk of load (wrk, 50 connections, 8 s chunks until ${memRequests.toLocaleString('en-US')} requests).`,
        '',
        '| ' + memory.map((m) => `${m.label}: requests | RSS MiB`).join(' | ') + ' |',
        '|' + memory.map(() => '---:|---:|').join(''),
        ...Array.from({ length: Math.max(...memory.map((m) => m.points.length)) }, (_, i) =>
          `| ${memory.map((m) => (m.points[i] ? `${m.points[i].requests} | ${fmt(m.points[i].rssMiB, 1)}` : '– | –')).join(' | ')} |`,
        ),
      );
    }
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / (xs.length || 1);
    const avgForeign = avg(foreign);
    out.push(
      '',
      `Other processes on the machine used on average ${(avgForeign * 100).toFixed(0)}% of one CPU during the measured runs (max ${(Math.max(0, ...foreign) * 100).toFixed(0)}%)` +
        (avgForeign > 0.1 ? ': the machine was not quiet, treat the numbers with care.' : '.'),
      `The hypervisor took (steal time) on average ${(avg(steal) * 100).toFixed(0)}% of one CPU during the measured runs (max ${(Math.max(0, ...steal) * 100).toFixed(0)}%)` +
        (avg(steal) > 0.05 ? ': CPU time per request is inflated by a busy host, compare within this run only.' : '.'),
    );
    out.push('', ...probeReport(samples, rounds));
    console.error(`measured in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    console.log(out.join('\n'));
  } finally {
    cleanup();
  }
}

// ---- entry (last: the helpers above must be initialised first) ---------------------------
if (args[0] === 'backends') {
  // Three keep-alive backends in one process: GET /16k → 16384 bytes, anything else → 100 bytes.
  const small = Buffer.alloc(100, 'a');
  const big = Buffer.alloc(16384, 'b');
  const ports: number[] = [];
  for (let i = 0; i < 3; i++) {
    const server = http.createServer((req, res) => {
      const body = req.url === '/16k' ? big : small;
      // Only a request with a body needs draining; resume() on every GET made the backend process
      // noticeably costlier, and the backends should cost as little as possible next to the proxy.
      if (req.headers['content-length'] || req.headers['transfer-encoding']) req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    });
    // Long idle timeout so proxies' pooled connections are not closed under them between runs.
    server.keepAliveTimeout = 120_000;
    server.headersTimeout = 121_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    ports.push((server.address() as AddressInfo).port);
  }
  process.stdout.write(`${JSON.stringify(ports)}\n`);
} else {
  await main();
}
