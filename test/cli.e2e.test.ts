import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startBackend, deadPort, type TestBackend } from './helpers/backends.js';
import { runCli, startLbProcess } from './helpers/process.js';
import { JarClient, testAgent } from './helpers/client.js';

const TOKEN = 'cli-test-token-123';

async function setup(ids: string[], maxIdle = '2s') {
  const bs = await Promise.all(ids.map((id) => startBackend(id)));
  const dir = mkdtempSync(join(tmpdir(), 'lb-cli-'));
  const port = await deadPort();
  const adminPort = await deadPort();
  const file = join(dir, 'lb.yaml');
  writeFileSync(
    file,
    `
listeners:
  - { name: web, host: 127.0.0.1, port: ${port}, pool: app }
pools:
  app:
    affinity:
      mode: cookie
      cookie: { maxIdle: ${maxIdle} }
    balance: round-robin
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
admin: { host: 127.0.0.1, port: ${adminPort}, token: ${TOKEN} }
state: { file: ${join(dir, "state.json")} }
`,
  );
  const env = { LB_ADMIN_URL: `http://127.0.0.1:${adminPort}`, LB_ADMIN_TOKEN: TOKEN, LB_DRAIN_POLL_MS: '250' };
  const cli = (...args: string[]) => runCli(args, env);
  return { bs, dir, file, base: `http://127.0.0.1:${port}`, cli, env };
}

/** Cookie clients making one request every `gapMs` while `active(i)` says so. */
function load(base: string, n: number, gapMs: number) {
  const agent = testAgent({ connections: 32 });
  const clients = Array.from({ length: n }, () => new JarClient(base, agent));
  const seen: Array<Array<{ at: number; id: string; status: number }>> = clients.map(() => []);
  const stopped = new Set<number>();
  let running = true;
  const loops = clients.map(async (c, i) => {
    while (running && !stopped.has(i)) {
      try {
        const r = await c.fetch('/');
        seen[i].push({ at: Date.now(), id: r.status === 200 ? r.json().id : '', status: r.status });
      } catch {
        seen[i].push({ at: Date.now(), id: '', status: 0 });
      }
      await new Promise((r) => setTimeout(r, gapMs));
    }
  });
  return {
    clients,
    seen,
    stop: (i: number) => stopped.add(i),
    pinned: (i: number) => seen[i].at(-1)?.id,
    end: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

describe('the lb CLI against a real lb process', () => {
  it('drain under load: nobody fails, pinned users stay until they idle out, --wait counts down and exits 0', async () => {
    const s = await setup(['n1', 'n2', 'n3']);
    await startLbProcess(s.file);
    const l = load(s.base, 30, 50);
    await new Promise((r) => setTimeout(r, 2500)); // > maxIdle: lb has watched long enough to trust a zero
    const onN3 = l.clients.map((_, i) => i).filter((i) => l.pinned(i) === 'n3');
    expect(onN3.length).toBe(10);
    const drainStarted = Date.now();
    const drain = await s.cli('drain', 'n3');
    expect(drain).toMatchObject({ code: 0 });
    expect(drain.stdout).toMatch(/^draining n3: draining/);
    const waiting = s.cli('drain', 'n3', '--wait', '--deadline', '1m');
    // Pinned users keep using n3 for a while, then leave; nobody new reaches it.
    await new Promise((r) => setTimeout(r, 1000));
    const newcomers = load(s.base, 20, 50);
    await new Promise((r) => setTimeout(r, 500));
    for (const i of onN3) {
      l.stop(i); // users leave one by one
      await new Promise((r) => setTimeout(r, 150));
    }
    const w = await waiting;
    await newcomers.end();
    await l.end();
    expect(w.code).toBe(0);
    expect(w.stdout).toMatch(/n3: drained after/);
    const counts = [...w.stdout.matchAll(/n3: draining: (\d+) sessions/g)].map((m) => Number(m[1]));
    expect(counts[0]).toBe(10);
    expect(counts.at(-1)).toBeLessThan(10);
    for (let k = 1; k < counts.length; k++) expect(counts[k]).toBeLessThanOrEqual(counts[k - 1]); // counts down
    const all = [...l.seen, ...newcomers.seen].flat();
    expect(all.filter((x) => x.status !== 200)).toEqual([]); // zero failed requests
    for (const i of onN3) {
      const during = l.seen[i].filter((x) => x.at > drainStarted);
      expect(during.length).toBeGreaterThan(10);
      expect(during.every((x) => x.id === 'n3')).toBe(true); // kept reaching n3
    }
    expect(newcomers.seen.flat().some((x) => x.id === 'n3')).toBe(false);
    const status = await s.cli('status');
    expect(status.stdout).toMatch(/n3\s+drained/);
  });

  it('add, weight, remove (refused while busy), restart keeps it all, cookies still work; bad input exits 1 with the error', async () => {
    // maxIdle is long here: n4's sessions must still count when `remove` runs, and the old cookie
    // must still be live after the restart, however long the CLI processes take to start.
    const s = await setup(['n1', 'n2'], '1m');
    const lb = await startLbProcess(s.file);
    const agent = testAgent();
    const old = new JarClient(s.base, agent);
    const oldId = (await old.fetch('/')).json().id;
    const n4: TestBackend = await startBackend('n4');
    const added = await s.cli('add', 'n4', n4.url, '--weight', '2', '--json');
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ id: 'n4', weight: 2, adminState: 'active' });
    const split = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const id = (await new JarClient(s.base, agent).fetch('/')).json().id as string;
      split.set(id, (split.get(id) ?? 0) + 1);
    }
    expect(split.get('n4')).toBe(20); // weight 2 of 4
    expect((await old.fetch('/')).json().id).toBe(oldId); // existing session stays put
    expect((await s.cli('weight', 'n1', '3')).code).toBe(0);
    // Refused while busy, with the API's 409 message.
    const busy = await s.cli('remove', 'n4');
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/LB_BACKEND_BUSY|still has \d+ sessions/);
    // Bad input: each exits 1 and says why.
    const dup = await s.cli('add', 'n1', 'http://127.0.0.1:1');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/exists/);
    expect((await s.cli('add', 'n9', 'ftp://nope')).code).toBe(1);
    expect((await s.cli('drain', 'nope')).stderr).toMatch(/no backend "nope"/);
    expect((await runCli(['backends'], { ...s.env, LB_ADMIN_TOKEN: 'wrong' })).stderr).toMatch(/401|token/i);
    expect((await s.cli('drain')).code).toBe(2); // usage
    await s.cli('drain', 'n2', '--deadline', '1h');

    // Restart: drains, additions and weights are in force; existing cookies still work.
    lb.proc.kill('SIGTERM');
    expect(await lb.exited).toBe(0);
    const state = readFileSync(join(s.dir, 'state.json'), 'utf8');
    await startLbProcess(s.file);
    const listed = JSON.parse((await s.cli('backends', '--json')).stdout).backends as Array<{ id: string; weight: number; adminState: string }>;
    expect(Object.fromEntries(listed.map((b) => [b.id, [b.adminState, b.weight]]))).toEqual({ n1: ['active', 3], n2: ['draining', 1], n4: ['active', 2] });
    expect((await old.fetch('/')).json().id).toBe(oldId);
    expect(readFileSync(join(s.dir, 'state.json'), 'utf8')).toBe(state); // a start does not rewrite it
    const forced = await s.cli('remove', 'n4', '--force');
    expect(forced.code).toBe(0);
    expect((await s.cli('backends', '--json')).stdout).not.toMatch(/"n4"/);
  });

  it('plan, explain and broadcast; drain --wait on a TTY draws a progress bar and exits 1 at the deadline', async () => {
    // maxIdle is long here: a CLI process can take seconds to start on a busy machine, and the
    // explain below must still see the cookie as live.
    const s = await setup(['n1', 'n2'], '1m');
    await startLbProcess(s.file);
    const agent = testAgent();
    const clients = Array.from({ length: 4 }, () => new JarClient(s.base, agent));
    const pinned = [];
    for (const c of clients) pinned.push((await c.fetch('/')).json().id as string);
    expect([...pinned].sort()).toEqual(['n1', 'n1', 'n2', 'n2']);
    // A user keeps using n2 throughout, so its drain cannot finish before a 2 s deadline.
    const n2user = clients.find((_, i) => pinned[i] === 'n2')!;
    let active = true;
    const keepAlive = (async () => {
      while (active) {
        await n2user.fetch('/').catch(() => undefined); // a failure shows in the assertions below, not as a stray rejection
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const plan = await s.cli('plan', 'drain', 'n1');
    expect(plan.stdout).toMatch(/live sessions that would move: \d of [234]/);
    const planAdd = await s.cli('plan', 'add', 'n9', 'http://127.0.0.1:9');
    expect(planAdd.stdout).toMatch(/share of new sessions: 33\.3%/);
    const target = (await clients[0].fetch('/')).json().id as string; // refreshes the cookie
    const ex = await s.cli('explain', '--cookie', clients[0].cookieHeader()!);
    expect(ex.code).toBe(0);
    expect(ex.stdout).toMatch(/signature valid/);
    expect(ex.stdout).toMatch(new RegExp(`=> ${target} \\(hit\\)`));
    expect((await s.cli('explain', '--cookie', 'lb_affinity=forged')).stdout).toMatch(/malformed/);
    const bc = await s.cli('broadcast', 'POST', '/cache/flush', '--data', 'all');
    expect(bc.code).toBe(0);
    expect(bc.stdout).toMatch(/n1\s+200/);
    expect(bc.stdout).toMatch(/n2\s+200/);
    for (const b of s.bs) expect(b.seen.some((x) => x.method === 'POST' && x.url === '/cache/flush')).toBe(true);
    const tty = await runCli(['-c', `script -qec "${process.execPath} dist/cli/main.js drain n2 --wait --deadline 2s" /dev/null`], s.env, '/bin/sh');
    active = false;
    await keepAlive;
    expect(tty.code, tty.stdout + tty.stderr).toBe(1);
    expect(tty.stdout).toMatch(/\r\[[#-]{24}\] n2: \d+ sessions, 0 websockets, \d+ in flight left; elapsed/);
    expect(tty.stdout).toMatch(/n2: deadline passed with/);
  });

  it('refuses to start on a corrupt state file, naming it, and leaves it untouched', async () => {
    const s = await setup(['n1']);
    writeFileSync(join(s.dir, 'state.json'), '{"format": 1, "backends": [ oops');
    const r = await runCli(['start', '-c', s.file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(join(s.dir, 'state.json'));
    expect(readFileSync(join(s.dir, 'state.json'), 'utf8')).toBe('{"format": 1, "backends": [ oops');
  });

  it('every verb has --help (exit 0); unknown flags are usage errors (exit 2)', async () => {
    for (const verb of ['start', 'demo', 'check-config', 'backends', 'status', 'add', 'drain', 'enable', 'maint', 'remove', 'weight', 'reload', 'plan', 'explain', 'broadcast']) {
      const r = await runCli([verb, '--help']);
      expect(r.code, verb).toBe(0);
      expect(r.stdout, verb).toMatch(new RegExp(`lb ${verb}`));
    }
    expect((await runCli(['backends', '--bogus'])).code).toBe(2);
  });

  it('`npx lb` works in the checkout, as the README runs it (the built bin is executable), and its first run rewrites nothing in dist/', async () => {
    // npx links the checkout into its own cache and runs `prepare` there on first use, that is
    // a build in place while other test files start lb from dist/. An empty npm cache makes every
    // run a first run; the incremental build (dist/.tsbuildinfo) must find nothing to write.
    const stamps = () => readdirSync('dist', { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => `${join(e.parentPath, e.name)} ${statSync(join(e.parentPath, e.name)).mtimeMs}`)
      .sort();
    const before = stamps();
    const cache = mkdtempSync(join(tmpdir(), 'lb-npx-cache-'));
    onTestFinished(() => rmSync(cache, { recursive: true, force: true }));
    const r = await runCli(['lb', '--help'], { npm_config_cache: cache, npm_config_loglevel: 'info' }, 'npx');
    expect(r.stderr).toMatch(/run lb@[\d.]+ prepare/); // the first-run build did happen
    expect(stamps()).toEqual(before);
    expect(r.stderr).not.toMatch(/Permission denied/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^lb — session-affinity load balancer/);
    expect(r.stdout).toMatch(/\n  demo /);
  });
});
