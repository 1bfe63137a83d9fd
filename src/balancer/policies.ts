import type { BalancePolicyName } from '../config/types.js';
import type { Policy, PolicyDeps } from './policy.js';
import { RoundRobin } from './round-robin.js';
import { LeastConnections } from './least-connections.js';
import { PowerOfTwo } from './p2c.js';

/** The typed factory table: one entry per `balance:` value of the config. */
export const POLICIES: Record<BalancePolicyName, (deps: PolicyDeps) => Policy> = {
  'round-robin': () => new RoundRobin(),
  'least-connections': (deps) => new LeastConnections(deps),
  p2c: (deps) => new PowerOfTwo(deps),
};
