import type { BackendInfo, BroadcastResult, ExplainResult, PlanResult, PoolInfo } from '../admin/wire.js';
import { parseDuration } from '../config/duration.js';
import { parseArgs, str, UsageError, type Parsed } from './args.js';
import { AdminClient, CliError } from './client.js';
import { bar, duration, table } from './format.js';

const COMMON = { boolean: ['json', 'wait', 'force', 'check'], alias: { p: 'pool', w: 'weight' } };
type Out = (s: string) => void;
const out: Out = (s) => process.stdout.write(s);

function json(p: Parsed, data: unknown): boolean {
  if (!p.flags.has('json')) return false;
  out(JSON.stringify(data, null, 2) + '\n');
  return true;
}

function need(p: Parsed, n: number, what: string): string[] {
  if (p.positional.length < n) throw new UsageError(`expected ${what}`);
  return p.positional;
}

const enc = encodeURIComponent;

function backendRows(list: BackendInfo[]): string {
  return table(
    ['ID', 'POOL', 'URL', 'STATUS', 'ADMIN', 'HEALTH', 'WEIGHT', 'SESSIONS', 'WS', 'INFLIGHT', 'VERSION'],
    list.map((b) => [b.id, b.pool, b.url, b.status, b.adminState, b.health, b.weight, b.sessions, b.websockets, b.inFlight, b.version ?? '-']),
  );
}

function line(b: BackendInfo): string {
  return `${b.id}: ${b.status} (admin ${b.adminState}, health ${b.health}, weight ${b.weight})\n`;
}

/** `lb drain ID --wait`: live progress until drained (exit 0) or the deadline (exit 1). */
async function waitForDrain(c: AdminClient, id: string, p: Parsed): Promise<number> {
  const tty = process.stdout.isTTY === true;
  const started = Date.now();
  let initial: number | undefined;
  let last: { left: string } | undefined;
  const interval = Number(process.env.LB_DRAIN_POLL_MS ?? 1000);
  for (;;) {
    const b = await c.call<BackendInfo>('GET', `/api/v1/backends/${enc(id)}`);
    if (b.adminState === 'drained') {
      if (tty) out('\n');
      // Drained by the deadline (what was left got re-pinned) is not drained by users leaving.
      if (b.drainedBy === 'deadline') {
        out(`${id}: deadline passed${last ? ` with ${last.left}` : ''}; what was left was re-pinned\n`);
        return 1;
      }
      out(`${id}: drained after ${duration((Date.now() - started) / 1000)}\n`);
      return 0;
    }
    if (b.adminState !== 'draining') throw new CliError(`${id} is no longer draining (now ${b.adminState})`);
    const d = b.drain!;
    initial ??= Math.max(d.remaining, 1);
    const left = `${b.sessions} sessions, ${b.websockets} websockets, ${b.inFlight} in flight left`;
    if (d.remaining > 0) last = { left };
    const timing = `elapsed ${duration(d.elapsedSeconds)}, eta ${duration(d.etaSeconds)}`;
    if (d.deadline && Date.now() >= Date.parse(d.deadline) + 2 * interval && d.remaining > 0) {
      if (tty) out('\n');
      out(`${id}: deadline passed with ${left}\n`);
      return 1;
    }
    if (p.flags.has('json')) out(JSON.stringify({ id, ...d, sessions: b.sessions, websockets: b.websockets, inFlight: b.inFlight }) + '\n');
    else if (tty) out(`\r${bar(1 - d.remaining / initial)} ${id}: ${left}; ${timing}   `);
    else out(`${id}: draining: ${left}; ${timing}\n`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export const ADMIN_COMMANDS: Record<string, { usage: string; run: (p: Parsed, c: AdminClient) => Promise<number> }> = {
  backends: {
    usage: 'lb backends [--json]\n\nList every backend with status, weight, live sessions, WebSockets and in-flight requests.',
    async run(p, c) {
      const { backends } = await c.call<{ backends: BackendInfo[] }>('GET', '/api/v1/backends');
      if (!json(p, { backends })) out(backendRows(backends));
      return 0;
    },
  },
  status: {
    usage: 'lb status [--json]\n\nPools and backends at a glance, with drain progress.',
    async run(p, c) {
      const [{ pools }, { backends }] = await Promise.all([
        c.call<{ pools: PoolInfo[] }>('GET', '/api/v1/pools'),
        c.call<{ backends: BackendInfo[] }>('GET', '/api/v1/backends'),
      ]);
      if (json(p, { pools, backends })) return 0;
      for (const pool of pools) {
        out(`pool ${pool.name} (${pool.affinity} affinity, ${pool.balance}): ${pool.eligible.length}/${pool.backends.length} taking new sessions\n`);
        for (const b of backends.filter((x) => x.pool === pool.name)) {
          const drain = b.drain ? `  draining: ${b.drain.remaining} left, eta ${duration(b.drain.etaSeconds)}` : '';
          out(`  ${b.id.padEnd(12)} ${b.status.padEnd(9)} sessions ${String(b.sessions).padStart(5)}  ws ${String(b.websockets).padStart(4)}  inflight ${String(b.inFlight).padStart(4)}${drain}\n`);
        }
      }
      return 0;
    },
  },
  add: {
    usage: 'lb add ID URL [--pool P] [--weight W] [--check]\n\nAdd a backend live; --check probes its health first.',
    async run(p, c) {
      const [id, url] = need(p, 2, 'ID and URL');
      const weight = str(p, 'weight');
      if (weight !== undefined && !/^\d+$/.test(weight)) throw new UsageError('--weight takes a whole number');
      const b = await c.call<BackendInfo>('POST', '/api/v1/backends', {
        id, url, pool: str(p, 'pool'), weight: weight === undefined ? undefined : Number(weight), check: p.flags.has('check') || undefined,
      });
      if (!json(p, b)) out(`added ${line(b)}`);
      return 0;
    },
  },
  drain: {
    usage: 'lb drain ID [--wait] [--deadline 30m] [--json]\n\nStop new sessions on ID; existing sessions, WebSockets and requests continue.\n--wait shows progress and exits 0 when drained, 1 at the deadline.',
    async run(p, c) {
      const [id] = need(p, 1, 'ID');
      const deadline = str(p, 'deadline');
      if (deadline !== undefined) {
        try {
          parseDuration(deadline);
        } catch {
          throw new UsageError(`--deadline takes a duration like 30m, got "${deadline}"`);
        }
      }
      const b = await c.call<BackendInfo>('POST', `/api/v1/backends/${enc(id)}/drain`, deadline ? { deadline } : undefined);
      if (!p.flags.has('wait')) {
        if (!json(p, b)) out(`draining ${line(b)}`);
        return 0;
      }
      return waitForDrain(c, id, p);
    },
  },
  enable: {
    usage: 'lb enable ID\n\nReturn ID to service (cancels a drain or maint).',
    async run(p, c) {
      const b = await c.call<BackendInfo>('POST', `/api/v1/backends/${enc(need(p, 1, 'ID')[0])}/enable`);
      if (!json(p, b)) out(`enabled ${line(b)}`);
      return 0;
    },
  },
  maint: {
    usage: 'lb maint ID\n\nStop all traffic to ID at once; its sessions are re-pinned.',
    async run(p, c) {
      const b = await c.call<BackendInfo>('POST', `/api/v1/backends/${enc(need(p, 1, 'ID')[0])}/maint`);
      if (!json(p, b)) out(`maint ${line(b)}`);
      return 0;
    },
  },
  remove: {
    usage: 'lb remove ID [--force]\n\nRemove ID; refused while it has sessions or connections unless --force.',
    async run(p, c) {
      const [id] = need(p, 1, 'ID');
      await c.call('DELETE', `/api/v1/backends/${enc(id)}${p.flags.has('force') ? '?force=true' : ''}`);
      out(`removed ${id}\n`);
      return 0;
    },
  },
  weight: {
    usage: 'lb weight ID W\n\nSet the weight of ID for new sessions (1-1000).',
    async run(p, c) {
      const [id, w] = need(p, 2, 'ID and W');
      if (!/^\d+$/.test(w)) throw new UsageError('W must be a whole number');
      const b = await c.call<BackendInfo>('PATCH', `/api/v1/backends/${enc(id)}`, { weight: Number(w) });
      if (!json(p, b)) out(`weight ${line(b)}`);
      return 0;
    },
  },
  reload: {
    usage: 'lb reload\n\nRe-read the config file and apply it live; an invalid file changes nothing.',
    async run(p, c) {
      const r = await c.call<{ warnings: string[] }>('POST', '/api/v1/reload');
      if (!json(p, r)) out(`reloaded${r.warnings.length ? `\n${r.warnings.map((w) => `warning: ${w}`).join('\n')}` : ''}\n`);
      return 0;
    },
  },
  plan: {
    usage: 'lb plan drain ID\nlb plan add ID URL [--pool P] [--weight W]\n\nDry run: how many live sessions and what share of hash keys and new sessions would move.',
    async run(p, c) {
      const [action, id, url] = need(p, 2, 'drain ID or add ID URL');
      if (action !== 'drain' && action !== 'add') throw new UsageError('plan takes drain or add');
      if (action === 'add' && !url) throw new UsageError('plan add needs ID and URL');
      const q = new URLSearchParams({ action, id });
      if (url) q.set('url', url);
      for (const k of ['pool', 'weight']) if (str(p, k)) q.set(k, str(p, k)!);
      const r = await c.call<PlanResult>('GET', `/api/v1/plan?${q}`);
      if (json(p, r)) return 0;
      out(`plan ${r.action} ${r.backend} (pool ${r.pool}):\n`);
      out(`  live sessions that would move: ${r.sessionsMoving} of ${r.sessionsTotal}\n`);
      out(`  share of new sessions: ${(r.newSessionShare * 100).toFixed(1)}%\n`);
      if (r.hashKeyShare !== null) out(`  share of hash keys that would move: ${(r.hashKeyShare * 100).toFixed(1)}%\n`);
      for (const n of r.notes) out(`  note: ${n}\n`);
      return 0;
    },
  },
  explain: {
    usage: 'lb explain --cookie VALUE [--pool P]\nlb explain --key K --pool P\n\nWhy a request with this cookie or hash key goes where it goes.',
    async run(p, c) {
      const cookie = str(p, 'cookie');
      const key = str(p, 'key');
      if (!cookie && !key) throw new UsageError('explain needs --cookie VALUE or --key K');
      const q = new URLSearchParams();
      if (cookie) q.set('cookie', cookie);
      if (key) q.set('key', key);
      if (str(p, 'pool')) q.set('pool', str(p, 'pool')!);
      const r = await c.call<ExplainResult>('GET', `/api/v1/explain?${q}`);
      if (json(p, r)) return 0;
      out(`pool ${r.pool} (${r.mode}):\n${r.steps.map((s) => `  - ${s}`).join('\n')}\n=> ${r.backend ?? 'no backend'} (${r.result})\n`);
      return 0;
    },
  },
  broadcast: {
    usage: 'lb broadcast METHOD PATH [--pool P] [--data BODY] [--json]\n\nSend one request to every active backend of a pool (cache flush, data import) and print each status.',
    async run(p, c) {
      const [method, path] = need(p, 2, 'METHOD and PATH');
      if (!path.startsWith('/')) throw new UsageError('PATH must start with /');
      const r = await c.call<BroadcastResult>('POST', '/api/v1/broadcast', { method: method.toUpperCase(), path, pool: str(p, 'pool'), data: str(p, 'data') });
      if (json(p, r)) return 0;
      out(table(['BACKEND', 'STATUS', 'MS', 'ERROR'], r.results.map((x) => [x.backend, x.status ?? '-', x.ms, x.error ?? ''])));
      return r.results.every((x) => x.status !== null && x.status < 400) ? 0 : 1;
    },
  },
};

export const ADMIN_PARSE = COMMON;

export async function runAdminCommand(name: string, argv: string[]): Promise<number> {
  const p = parseArgs(argv, { boolean: COMMON.boolean, alias: COMMON.alias });
  return ADMIN_COMMANDS[name].run(p, AdminClient.from(p));
}
