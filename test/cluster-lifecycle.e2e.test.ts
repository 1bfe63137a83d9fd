import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startBackend, deadPort } from './helpers/backends.js';

const CLI = resolve('dist/cli/main.js');
const TOKEN = 'cluster-token-123';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `lb start -c FILE` as a process, not waiting for anything (the test decides what to wait for). */
function spawnLb(file: string): { pid: number; logs: () => string; exited: Promise<number | string>; signal: (s: NodeJS.Signals) => void } {
  const proc = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | string>((r) => proc.on('exit', (code, sig) => r(code ?? sig ?? -1)));
  onTestFinished(() => {
    // Workers log their pid once ready; any still alive after the test are killed by pid.
    for (const m of out.matchAll(/"workerPid":(\d+)/g)) {
      try {
        process.kill(Number(m[1]), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return { pid: proc.pid!, logs: () => out, exited, signal: (s) => proc.kill(s) };
}

/** Resolves to what `p` resolved to, or to `timeout` after `ms`. */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> => Promise.race([p, sleep(ms).then(() => 'timeout' as const)]);

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(5);
  }
}

async function clusterYaml(extra = ''): Promise<{ file: string; dir: string; port: number; adminPort: number }> {
  const b = await startBackend('n1');
  const dir = mkdtempSync(join(tmpdir(), 'lb-life-'));
  const port = await deadPort();
  const adminPort = await deadPort();
  const file = join(dir, 'lb.yaml');
  writeFileSync(
    file,
    `
workers: 2
listeners: [ { name: web, host: 127.0.0.1, port: ${port}, pool: app } ]
pools:
  app:
    affinity: { mode: none }
    backends:
      - { id: n1, url: "${b.url}" }
admin: { host: 127.0.0.1, port: ${adminPort}, token: ${TOKEN} }
state: { file: "${dir}/state.json" }
timeouts: { gracePeriod: 1s }
${extra}`,
  );
  return { file, dir, port, adminPort };
}

describe('workers: 2, lifecycle', () => {
  it.each([0, 100, 300])('SIGTERM %i ms after the workers are forked: the primary and every worker exit', async (delay) => {
    const { file } = await clusterYaml();
    const lb = spawnLb(file);
    await waitFor(() => /"cluster\.start"/.test(lb.logs()), 15_000);
    await sleep(delay);
    lb.signal('SIGTERM');
    expect(await within(lb.exited, 8000)).toBe(0);
    // No worker went on serving after the stop.
    expect(lb.logs()).not.toMatch(/"cluster\.worker\.died"/);
  });
});
