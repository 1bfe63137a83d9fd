import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { onTestFinished } from 'vitest';
import { App } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';

export interface RunningLb {
  app: App;
  url: string;
  port: (listener?: string) => number;
  /** Every log line so far, parsed. */
  logs: () => Array<Record<string, unknown>>;
  dir: string;
}

/**
 * lb in-process from YAML text. `${DIR}` in the text is replaced by a fresh temp dir (state
 * file, certificates). Listeners should use port 0.
 */
export async function startLb(yaml: string, opts: { now?: () => number; random?: () => number; dir?: string; env?: Record<string, string> } = {}): Promise<RunningLb> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'lb-test-'));
  const text = yaml.replaceAll('${DIR}', dir);
  const config = parseConfig(text, { file: join(dir, 'lb.yaml'), env: { ...process.env, ...opts.env }, baseDir: dir });
  const stream = new PassThrough();
  const lines: string[] = [];
  let pending = '';
  stream.on('data', (c: Buffer) => {
    const parts = (pending + c.toString()).split('\n');
    pending = parts.pop()!;
    lines.push(...parts);
  });
  const logger = createLogger('info', stream);
  const app = await App.start({ config, logger, now: opts.now, random: opts.random });
  onTestFinished(() => app.stop(100));
  const port = (name = config.listeners[0].name): number => app.port(name);
  return {
    app,
    url: `http://127.0.0.1:${port()}`,
    port,
    logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    dir,
  };
}
