import { randomBytes } from 'node:crypto';
import http from 'node:http';

/**
 * A demo app server: it keeps user sessions in memory, like the stateful apps lb is for.
 * Each answer names the server and counts the visits of this session, so stickiness is visible.
 */
export interface DemoServer {
  id: string;
  port: number;
  close(): Promise<void>;
}

export async function startDemoServer(id: string, port: number, host = '127.0.0.1', version = '1.0.0'): Promise<DemoServer> {
  const sessions = new Map<string, number>();
  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-app-version': version });
      res.end(JSON.stringify({ status: 'ok', id, version }));
      return;
    }
    const sid = /(?:^|;\s*)demo_sid=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1];
    const known = sid !== undefined && sessions.has(sid);
    const session = known ? sid! : randomBytes(9).toString('base64url');
    const visits = (sessions.get(session) ?? 0) + 1;
    sessions.set(session, visits);
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=utf-8', 'x-backend': id };
    if (!known) headers['set-cookie'] = `demo_sid=${session}; Path=/; HttpOnly; SameSite=Lax`;
    const repinned = req.headers['x-lb-repinned'];
    res.writeHead(200, headers);
    res.end(
      `Hello from ${id}. This session has visited ${visits} time${visits === 1 ? '' : 's'}` +
        (known ? '' : ' (new session on this server)') +
        (repinned ? ` [moved here: ${repinned}]` : '') +
        '.\n',
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    id,
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
