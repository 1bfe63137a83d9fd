import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { onTestFinished } from 'vitest';

const CLI = resolve('dist/cli/main.js');

/** Run the real `lb` CLI (dist/) as a process. */
export function runCli(args: string[], env: Record<string, string> = {}, program?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    // `program` runs something else with these args (a shell around the CLI, e.g. to give it a TTY).
    const p = program ? spawn(program, args, { env: { ...process.env, ...env } }) : spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => done({ code: code ?? -1, stdout, stderr }));
  });
}

/** Start `lb start -c FILE` as a real process; resolves once it logs that it listens. */
export async function startLbProcess(file: string): Promise<{ proc: ChildProcess; logs: () => string; exited: Promise<number> }> {
  const proc = spawn(process.execPath, [CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number>((r) => proc.on('exit', (code) => r(code ?? -1)));
  onTestFinished(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const deadline = Date.now() + 15_000;
  while (!/listening on/.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`lb did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, logs: () => out, exited };
}

