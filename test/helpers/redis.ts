import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { onTestFinished } from 'vitest';
import { deadPort } from './backends.js';

export interface TestRedis {
  port: number;
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Freeze the server (SIGSTOP): connections stay open and nothing answers. */
  pause(): void;
  resume(): void;
}

/** A real redis-server on a free port (no persistence), stopped by PID when the test ends. */
export async function startRedis(): Promise<TestRedis> {
  const port = await deadPort();
  let proc: ChildProcess | undefined;
  const up = async (): Promise<void> => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
        s.on('data', (d) => {
          s.destroy();
          resolve(d.toString().startsWith('+PONG'));
        });
        s.on('error', () => resolve(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('redis-server did not start');
  };
  const down = async (): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  };
  await up();
  onTestFinished(down);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: down,
    start: up,
    pause: () => void proc?.kill('SIGSTOP'),
    resume: () => void proc?.kill('SIGCONT'),
  };
}
