/**
 * Wall-clock milliseconds, read once per socket read instead of at every use. HAProxy does the
 * same (`now_ms`, updated once per wake-up of its poll loop): everything one read sets off (a
 * request parsed, placed and forwarded; a response relayed and logged) happens within a
 * fraction of a millisecond, so it can share one reading. `Date.now()` is a call into V8's
 * runtime and a new heap number, ~70 ns; a proxied request asked for the time seven times.
 *
 * `held(fn, a)` runs `fn(a)` with the clock read once for everything it calls; `now()` is that
 * reading inside, and `Date.now()` anywhere else (timers, the admin API, tests' own code).
 */
let reading = 0;

export function now(): number {
  return reading === 0 ? Date.now() : reading;
}

/**
 * Call `fn(a)` with the time held. Nested calls keep the outer reading. The reading is
 * released however `fn` ends, so a throw never leaves a stale clock behind.
 */
export function held<A>(fn: (a: A) => void, a: A): void {
  if (reading !== 0) return fn(a);
  reading = Date.now();
  try {
    fn(a);
  } finally {
    reading = 0;
  }
}
