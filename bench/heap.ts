/**
 * Is lb's memory growth a leak? Starts lb in this process (from dist/) with the given config and,
 * every `--every` seconds, forces a full GC and prints RSS, the live JS heap and external memory.
 * Put load on it from elsewhere (wrk); a flat heapUsed with a creeping RSS means the growth is
 * outside the JS heap (the allocator), not objects lb keeps.
 *
 *   node --expose-gc --import tsx bench/heap.ts lb.yaml [--every 15]
 */
import { fileURLToPath } from 'node:url';

const [config, ...rest] = process.argv.slice(2);
const every = Number(rest[rest.indexOf('--every') + 1]) || 15;
if (!config || typeof globalThis.gc !== 'function') {
  console.error('usage: node --expose-gc --import tsx bench/heap.ts lb.yaml [--every 15]');
  process.exit(2);
}
const gc = globalThis.gc;
const main = new URL('../dist/cli/main.js', import.meta.url);
process.argv = [process.argv[0], fileURLToPath(main), 'start', '-c', config];
await import(main.href);
const t0 = Date.now();
const mib = (n: number): string => (n / 1048576).toFixed(1);
setInterval(() => {
  gc();
  const m = process.memoryUsage();
  console.error(`t=${Math.round((Date.now() - t0) / 1000)}s rss=${mib(m.rss)} heapUsed=${mib(m.heapUsed)} heapTotal=${mib(m.heapTotal)} external=${mib(m.external)} MiB`);
}, every * 1000).unref();
