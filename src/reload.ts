import type { LbConfig } from './config/types.js';
import type { App } from './app.js';

/**
 * Apply the difference between the running config and a new, already validated one:
 * pools' settings, backends added/removed/re-weighted in the YAML (admin changes made at run
 * time stay in force), routes. Listener changes, and the timeouts, retries, forwarded and
 * trustedProxies listeners take at start, need a restart; they are reported, not applied.
 */
export function applyConfigDiff(app: App, next: LbConfig): string[] {
  const warnings: string[] = [];
  const prev = app.config;
  if (JSON.stringify(listenerShape(prev)) !== JSON.stringify(listenerShape(next))) {
    warnings.push('listeners changed: restart lb to apply listener changes (tls files are reloaded live)');
  }
  // The listeners took these when they started; a reload leaves them as they were.
  for (const key of ['timeouts', 'retries', 'forwarded', 'trustedProxies'] as const) {
    if (JSON.stringify(prev[key]) !== JSON.stringify(next[key])) warnings.push(`${key} changed: restart lb to apply it`);
  }
  const removedByAdmin = new Set(app.state.removed);
  const adminOwned = new Set(app.state.backends.map((b) => b.id));
  for (const pool of Object.values(next.pools)) {
    const before = prev.pools[pool.name];
    app.registry.setPoolConfig(pool);
    if (!before || JSON.stringify({ ...before, backends: [] }) !== JSON.stringify({ ...pool, backends: [] })) {
      app.balancer.setPool(pool);
    }
    for (const b of pool.backends) {
      if (removedByAdmin.has(b.id)) continue;
      const running = app.registry.get(b.id);
      if (!running) app.registry.add({ id: b.id, pool: pool.name, url: b.url, weight: b.weight });
      else if (running.pool !== pool.name || running.url.href !== new URL(b.url).href) {
        app.registry.remove(b.id);
        app.registry.add({ id: b.id, pool: pool.name, url: b.url, weight: b.weight });
      } else if (!adminOwned.has(b.id)) app.registry.setWeight(b.id, b.weight);
    }
  }
  const inConfig = new Set(Object.values(next.pools).flatMap((p) => p.backends.map((b) => b.id)));
  const addedByAdmin = new Set(app.state.backends.filter((b) => b.added).map((b) => b.id));
  for (const b of app.registry.all()) {
    if (!inConfig.has(b.id) && !addedByAdmin.has(b.id)) app.registry.remove(b.id);
  }
  for (const name of Object.keys(prev.pools)) {
    if (!next.pools[name]) warnings.push(`pool "${name}" was removed from the config; its backends were removed`);
  }
  return warnings;
}

function listenerShape(c: LbConfig) {
  return c.listeners.map((l) => ({ ...l, tls: l.tls ? { ...l.tls, watch: undefined } : undefined }));
}
