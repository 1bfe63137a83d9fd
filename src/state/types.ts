import type { AdminState } from '../balancer/types.js';

/**
 * What lb persists on top of the YAML config: admin changes (they are state, not config) and the
 * generated cookie secret. Versioned so a late or duplicate write never rolls state back.
 */
export interface PersistedBackend {
  id: string;
  pool: string;
  url: string;
  weight: number;
  adminState: AdminState;
  drainDeadline?: number;
  /** Added at run time (not in the YAML config). */
  added?: boolean;
}

export interface PersistedState {
  format: 1;
  version: number;
  updatedAt: string;
  cookieSecret?: string;
  backends: PersistedBackend[];
  /** Ids from the YAML config that an operator removed. */
  removed: string[];
}

export interface StateStore {
  /** undefined when nothing was stored yet. Throws a clear error on a corrupt store. */
  load(): Promise<PersistedState | undefined>;
  save(state: PersistedState): Promise<void>;
  /** Can a change be stored right now? (A shared store may be unreachable.) Absent: always. */
  writable?(): boolean;
  close(): Promise<void>;
}

export function emptyState(): PersistedState {
  return { format: 1, version: 0, updatedAt: new Date(0).toISOString(), backends: [], removed: [] };
}
