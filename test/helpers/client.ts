import { Agent, request } from 'undici';
import { onTestFinished } from 'vitest';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: () => any;
}

/** A keep-alive HTTP agent shared by a test; closed with it. */
export function testAgent(opts: ConstructorParameters<typeof Agent>[0] = {}): Agent {
  const agent = new Agent({ keepAliveTimeout: 10_000, ...opts });
  onTestFinished(() => agent.close());
  return agent;
}

/** A browser-like client with a cookie jar. */
export class JarClient {
  readonly jar = new Map<string, string>();
  constructor(
    readonly base: string,
    readonly agent: Agent,
  ) {}

  cookieHeader(): string | undefined {
    return this.jar.size ? [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ') : undefined;
  }

  async fetch(path: string, init: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal } = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...init.headers };
    const cookie = this.cookieHeader();
    if (cookie) headers.cookie = cookie;
    const res = await request(this.base + path, { method: (init.method ?? 'GET') as 'GET', headers, body: init.body, dispatcher: this.agent, signal: init.signal });
    const body = await res.body.text();
    for (const sc of ([] as string[]).concat(res.headers['set-cookie'] ?? [])) {
      const [pair] = sc.split(';');
      const eq = pair.indexOf('=');
      this.jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return { status: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body) };
  }
}

export async function get(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; agent?: Agent } = {}): Promise<Reply> {
  const res = await request(url, { method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body, dispatcher: init.agent });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body) };
}
