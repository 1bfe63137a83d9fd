import { request } from 'undici';

export interface ApiReply {
  status: number;
  body: any;
}

/** One admin API call. */
export async function api(base: string, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; contentType?: string } = {}): Promise<ApiReply> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  const res = await request(base + path, { method: method as 'GET', headers, body: payload });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
}
