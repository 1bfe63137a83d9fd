import { request } from 'undici';
import type { Parsed } from './args.js';
import { str } from './args.js';

/** Talks to the admin API with the same wire types the server uses. */
export class AdminClient {
  constructor(
    readonly base: string,
    readonly token?: string,
  ) {}

  static from(p: Parsed): AdminClient {
    const base = str(p, 'admin') ?? process.env.LB_ADMIN_URL ?? 'http://127.0.0.1:9090';
    return new AdminClient(base.replace(/\/$/, ''), str(p, 'token') ?? process.env.LB_ADMIN_TOKEN);
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res;
    try {
      res = await request(this.base + path, {
        method: method as 'GET',
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
    } catch (err) {
      throw new CliError(`cannot reach the admin API at ${this.base}: ${(err as Error).message} (set --admin or LB_ADMIN_URL)`);
    }
    const text = await res.body.text();
    const data = text ? JSON.parse(text) : undefined;
    if (res.statusCode >= 400) {
      const e = data?.error;
      throw new CliError(e ? `${e.message} (${e.code}, HTTP ${res.statusCode})` : `HTTP ${res.statusCode}`);
    }
    return data as T;
  }
}

/** A failure to report (exit 1), as opposed to a usage error (exit 2). */
export class CliError extends Error {}
