import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startBackend, type TestBackend } from './helpers/backends.js';
import { startLb, type RunningLb } from './helpers/lb.js';
import { JarClient, testAgent } from './helpers/client.js';
import { startRedis } from './helpers/redis.js';
import { api } from './helpers/admin.js';

const until = async (cond: () => boolean, ms = 3000): Promise<number> => {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
};

function yaml(bs: TestBackend[], redisUrl: string, prefix: string): string {
  return `
listeners: [ { name: web, port: 0, host: 127.0.0.1, pool: app } ]
pools:
  app:
    affinity: { mode: cookie, cookie: { maxIdle: 30m } }
    balance: round-robin
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
admin: { host: 127.0.0.1, port: 0, token: fleet-token-1 }
state: { store: redis, redis: { url: "${redisUrl}", prefix: "${prefix}" } }
`;
}

describe('several lb instances on one Redis', () => {
  it('share admin changes within 1 s, cookies and drain progress; survive a Redis restart', async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2', 'n3', 'n4'].map((id) => startBackend(id)));
    const prefix = `fleet${Date.now()}:`;
    const a: RunningLb = await startLb(yaml(bs.slice(0, 3), redis.url, prefix));
    const b: RunningLb = await startLb(yaml(bs.slice(0, 3), redis.url, prefix));
    const agent = testAgent();

    // `add` on A is visible on B within 1 s.
    await a.app.control!.add({ id: 'n4', url: bs[3].url });
    const tookAdd = await until(() => b.app.registry.get('n4') !== undefined);
    expect(tookAdd).toBeLessThan(1000);

    // A cookie issued by A is honoured by B (the generated secret is shared through Redis).
    const viaA = new JarClient(a.url, agent);
    const pinned = (await viaA.fetch('/')).json().id as string;
    const viaB = new JarClient(b.url, agent);
    for (const [k, v] of viaA.jar) viaB.jar.set(k, v);
    for (let i = 0; i < 3; i++) expect((await viaB.fetch('/')).json().id).toBe(pinned);

    // Sessions made through B, on n1.
    const bUsers: JarClient[] = [];
    while (bUsers.length < 5) {
      const c = new JarClient(b.url, agent);
      if ((await c.fetch('/')).json().id === 'n1') bUsers.push(c);
    }
    await new Promise((r) => setTimeout(r, 700)); // one exchange with Redis

    // `drain` on B is honoured by A for new sessions; existing sessions continue on both.
    await b.app.control!.drain('n1', {});
    await until(() => a.app.registry.get('n1')!.adminState === 'draining');
    for (let i = 0; i < 20; i++) expect((await new JarClient(a.url, agent).fetch('/')).json().id).not.toBe('n1');
    for (const c of bUsers) {
      expect((await c.fetch('/')).json().id).toBe('n1'); // on B
      const onA = new JarClient(a.url, agent);
      for (const [k, v] of c.jar) onA.jar.set(k, v);
      expect((await onA.fetch('/')).json().id).toBe('n1'); // and on A
    }
    // Drain progress on A counts the sessions served by B.
    await until(() => a.app.drains.progress(a.app.registry.get('n1')!).sessions >= bUsers.length);

    // Redis goes away: both keep serving, admin changes are refused with 503, nothing half-applied.
    await redis.stop();
    await new Promise((r) => setTimeout(r, 300));
    const during: number[] = [];
    for (let i = 0; i < 20; i++) {
      during.push((await new JarClient(a.url, agent).fetch('/')).status, (await new JarClient(b.url, agent).fetch('/')).status);
    }
    expect(during.every((s) => s === 200)).toBe(true);
    const refused = await api(`http://127.0.0.1:${a.app.adminPort()}`, 'POST', '/api/v1/backends/n2/maint', { token: 'fleet-token-1' });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('LB_UNAVAILABLE');
    expect(a.app.registry.get('n2')!.adminState).toBe('active');
    // Redis comes back empty (no persistence): an instance re-seeds it from the state it kept
    // serving with, and the next change converges both instances.
    await redis.start();
    await until(() => a.app.store.writable!() && b.app.store.writable!(), 5000);
    await until(() => a.logs().some((l) => l.event === 'state.fleet.reseeded') || b.logs().some((l) => l.event === 'state.fleet.reseeded'), 3000);
    await a.app.control!.setWeight('n2', { weight: 3 });
    await until(() => b.app.registry.get('n2')!.weight === 3);
    expect(b.app.registry.get('n1')!.adminState).toBe('draining');
    expect(b.app.registry.get('n4')).toBeDefined();
  });

  it('hash mode: keys seen by one instance keep their draining backend on every instance', async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startBackend(id)));
    const prefix = `fleethash${Date.now()}:`;
    const text = yaml(bs, redis.url, prefix).replace('affinity: { mode: cookie, cookie: { maxIdle: 30m } }', 'affinity: { mode: hash, hash: { key: "header:X-User", maxIdle: 30m } }');
    const a = await startLb(text);
    const b = await startLb(text);
    const agent = testAgent();
    const ask = async (lb: RunningLb, user: string): Promise<string> => (await new JarClient(lb.url, agent).fetch('/', { headers: { 'x-user': user } })).json().id;
    // Users seen only through B.
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    const owners = new Map<string, string>();
    for (const u of users) owners.set(u, await ask(b, u));
    const onN2 = users.filter((u) => owners.get(u) === 'n2');
    expect(onN2.length).toBeGreaterThan(5);
    await new Promise((r) => setTimeout(r, 700)); // one exchange with Redis
    await b.app.control!.drain('n2', {});
    await until(() => a.app.registry.get('n2')!.adminState === 'draining');
    await new Promise((r) => setTimeout(r, 300)); // A learns the fleet's keys on n2
    for (const u of onN2) expect(await ask(a, u)).toBe('n2'); // A never saw them, yet keeps them on n2
    for (let i = 0; i < 30; i++) expect(await ask(a, `new-${i}`)).not.toBe('n2'); // new keys never go there
    expect(a.app.drains.progress(a.app.registry.get('n2')!).sessions).toBeGreaterThanOrEqual(onN2.length);
    // An instance started while the drain is under way (a restart) learns those keys too.
    const c = await startLb(text);
    expect(c.app.registry.get('n2')!.adminState).toBe('draining');
    await new Promise((r) => setTimeout(r, 300));
    for (const u of onN2) expect(await ask(c, u)).toBe('n2');
  });

  it("a drain is not done, and a DELETE without force is refused, while another instance still has a request in flight on the backend", async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2'].map((id) => startBackend(id)));
    const prefix = `fleetinflight${Date.now()}:`;
    const y = yaml(bs, redis.url, prefix).replace('affinity: { mode: cookie, cookie: { maxIdle: 30m } }', 'affinity: { mode: none }');
    const a: RunningLb = await startLb(y);
    const b: RunningLb = await startLb(y);
    const agent = testAgent();
    // Two slow requests through B: round-robin puts one on n1 (no sessions in mode none: only it keeps n1 busy).
    const slow = Promise.all([1, 2].map(() => new JarClient(b.url, agent).fetch('/slow?ms=3000')));
    await until(() => b.app.registry.get('n1')!.inFlight === 1);
    await a.app.control!.drain('n1', {});
    await new Promise((r) => setTimeout(r, 1700)); // exchanges with Redis after the drain began
    const n1 = a.app.registry.get('n1')!;
    expect(n1.adminState).toBe('draining');
    expect(a.app.drains.progress(n1).inFlight).toBe(1);
    await expect(a.app.control!.remove('n1', false)).rejects.toMatchObject({ code: 'LB_BACKEND_BUSY' });
    await slow;
    await until(() => a.app.registry.get('n1')!.adminState === 'drained', 5000);
  });

  it('instances starting together on an empty Redis both start and share one generated cookie secret', async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2'].map((id) => startBackend(id)));
    const agent = testAgent();
    for (let round = 0; round < 4; round++) {
      const y = yaml(bs, redis.url, `fleetstart${Date.now()}r${round}:`);
      const [a, b] = await Promise.all([startLb(y), startLb(y)]);
      const viaA = new JarClient(a.url, agent);
      const pinned = (await viaA.fetch('/')).json().id as string;
      const viaB = new JarClient(b.url, agent);
      for (const [k, v] of viaA.jar) viaB.jar.set(k, v);
      expect((await viaB.fetch('/')).json().id).toBe(pinned);
      expect(b.logs().filter((l) => l.event === 'affinity.rejected' || l.reason === 'bad-signature')).toEqual([]);
    }
  });

  it('an id removed and added again with another URL, in quick succession, has the new URL on every instance', async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2', 'n3', 'n4'].map((id) => startBackend(id)));
    const y = yaml(bs.slice(0, 3), redis.url, `fleetreadd${Date.now()}:`);
    const a: RunningLb = await startLb(y);
    const b: RunningLb = await startLb(y);
    await a.app.control!.remove('n3', true);
    await a.app.control!.add({ id: 'n3', url: bs[3].url });
    const moved = new URL(bs[3].url).href;
    await until(() => b.app.registry.get('n3')?.url.href === moved, 3000);
    expect(a.app.registry.get('n3')!.url.href).toBe(moved);
  });

  it('an instance whose subscription dropped catches up when it reconnects, and its next change is accepted', async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startBackend(id)));
    const y = yaml(bs, redis.url, `fleetresub${Date.now()}:`);
    const a: RunningLb = await startLb(y);
    const b: RunningLb = await startLb(y);
    // Every subscriber connection is cut; A changes a weight while B's is down.
    const admin = new Redis(redis.url);
    try {
      await admin.client('KILL', 'TYPE', 'pubsub');
    } finally {
      admin.disconnect();
    }
    await a.app.control!.setWeight('n3', { weight: 5 });
    await until(() => b.app.registry.get('n3')!.weight === 5, 4000);
    await b.app.control!.maint('n2');
    await until(() => a.app.registry.get('n2')!.adminState === 'maint');
  });

  it('a Redis that stops answering gets admin changes a 503 within seconds, with nothing applied', async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2'].map((id) => startBackend(id)));
    const a: RunningLb = await startLb(yaml(bs, redis.url, `fleetfrozen${Date.now()}:`));
    redis.pause();
    try {
      const started = Date.now();
      await expect(a.app.control!.maint('n2')).rejects.toMatchObject({ code: 'LB_UNAVAILABLE' });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(a.app.registry.get('n2')!.adminState).toBe('active');
    } finally {
      redis.resume();
    }
  });

  it('after maint, the backend counts no sessions fleet-wide once they are re-pinned, and can be removed without force', async () => {
    const redis = await startRedis();
    const bs = await Promise.all(['n1', 'n2', 'n3'].map((id) => startBackend(id)));
    const y = yaml(bs, redis.url, `fleetmaint${Date.now()}:`);
    const a: RunningLb = await startLb(y);
    const b: RunningLb = await startLb(y);
    const agent = testAgent();
    const users = Array.from({ length: 30 }, () => new JarClient(b.url, agent));
    for (const u of users) await u.fetch('/');
    await until(() => a.app.drains.progress(a.app.registry.get('n1')!).sessions > 0); // B's sessions, through Redis
    await a.app.control!.maint('n1');
    await until(() => b.app.registry.get('n1')!.adminState === 'maint');
    // Every user comes back through both instances: those of n1 are re-pinned.
    for (const u of users) {
      expect((await u.fetch('/')).json().id).not.toBe('n1');
      const onA = new JarClient(a.url, agent);
      for (const [k, v] of u.jar) onA.jar.set(k, v);
      expect((await onA.fetch('/')).json().id).not.toBe('n1');
    }
    await new Promise((r) => setTimeout(r, 1200)); // exchanges on both instances
    expect(a.app.drains.progress(a.app.registry.get('n1')!)).toMatchObject({ sessions: 0, remaining: 0 });
    await a.app.control!.remove('n1', false);
    await until(() => b.app.registry.get('n1') === undefined);
  });
});
