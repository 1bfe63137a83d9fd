import type { Affinity, Decision, Lookup } from '../affinity/types.js';
import type { PoolView } from './registry.js';
import type { Policy } from './policy.js';
import { repinReason, type Backend, type RepinReason } from './types.js';

export interface SelectDeps {
  affinity: Affinity;
  policy: Policy;
  weightOf: (b: Backend) => number;
  now: () => number;
}

/**
 * Has an operator ended the backend's sessions (they are re-pinned, its WebSockets closed)? In
 * maint, drained (by its deadline, or with nothing left), or draining past its deadline.
 */
export function sessionsEnded(b: Backend, now: number): boolean {
  return b.adminState === 'maint' || b.adminState === 'drained' || (b.adminState === 'draining' && b.drainDeadline !== undefined && now >= b.drainDeadline);
}

/** Why a pinned session must move, given drain deadlines too; undefined if it may stay. */
export function pinnedReason(b: Backend | undefined, now: number): RepinReason | undefined {
  const reason = repinReason(b);
  if (reason) return reason;
  // Past its deadline, or drained: a cookie still naming it is re-pinned, not sent back.
  return sessionsEnded(b!, now) ? 'deadline' : undefined;
}

/**
 * The one function where affinity and policy meet. A valid pin to a backend that still serves
 * its sessions (active or draining) is a hit; otherwise the request is placed as a new session,
 * and the result says why (new, rejected cookie, or repin with reason).
 * Returns undefined when no backend can take the request.
 */
export function select(view: PoolView, lookup: Lookup, deps: SelectDeps): Decision | undefined {
  if (lookup.kind === 'pinned') {
    const pinned = view.byId.get(lookup.backendId);
    const reason = pinnedReason(pinned, deps.now());
    if (reason === undefined) return { backend: pinned!, result: 'hit', lookup };
    const backend = place(view, lookup, deps);
    if (!backend) return undefined;
    return { backend, result: 'repin', lookup, repinnedFrom: lookup.backendId, repinReason: reason };
  }
  const backend = place(view, lookup, deps);
  if (!backend) return undefined;
  const fallback = deps.affinity.mode === 'hash' && lookup.hashKey === undefined;
  return { backend, result: lookup.kind === 'rejected' ? 'rejected' : 'new', lookup, fallback };
}

function place(view: PoolView, lookup: Lookup, deps: SelectDeps): Backend | undefined {
  const placed = deps.affinity.place?.(lookup, view);
  if (placed) return placed;
  if (view.eligible.length === 0) return undefined;
  return deps.policy.pick(view.eligible, deps.weightOf);
}
