import type { Backend } from './types.js';

/**
 * Places *new* sessions. One tiny interface (Caddy's Selector); one file per implementation;
 * a typed factory table instead of string-keyed loading. Policies never write cookies.
 */
export interface Policy {
  /** Choose among candidates (all eligible, non-empty) using their effective weights. */
  pick(candidates: readonly Backend[], weightOf: (b: Backend) => number): Backend;
}

export interface PolicyDeps {
  /** Uniform random in [0, 1); injected so tests are deterministic. */
  random: () => number;
}

/** Load as policies see it: in-flight requests plus open WebSockets (SPEC §3). */
export function loadOf(b: Backend): number {
  return b.inFlight + b.websockets;
}
