/** Wire types of the admin API, shared by the server and the CLI (one definition). */
import type { AdminState, Health } from '../balancer/types.js';

export type BackendStatus = 'up' | 'down' | 'draining' | 'drained' | 'maint' | 'starting';

export interface BackendInfo {
  id: string;
  pool: string;
  url: string;
  weight: number;
  /** Weight in effect now (slow start ramps it after a backend comes back). */
  effectiveWeight: number;
  adminState: AdminState;
  health: Health;
  status: BackendStatus;
  inFlight: number;
  websockets: number;
  sessions: number;
  version: string | null;
  drain: DrainInfo | null;
  /** For a drained backend: whether its users left (`idle`) or the deadline re-pinned the rest. */
  drainedBy: 'idle' | 'deadline' | null;
}

export interface DrainInfo {
  startedAt: string;
  deadline: string | null;
  /** sessions + websockets + inFlight still on the backend */
  remaining: number;
  /** seconds until drained, estimated; null when unknown */
  etaSeconds: number | null;
  elapsedSeconds: number;
}

export interface PoolInfo {
  name: string;
  affinity: string;
  balance: string;
  backends: string[];
  eligible: string[];
  versions: Record<string, number>;
}

export interface ApiError {
  error: { code: string; message: string };
}

export interface AddBackendRequest {
  id: string;
  url: string;
  pool?: string;
  weight?: number;
  check?: boolean;
}

export interface PlanResult {
  action: 'drain' | 'add';
  backend: string;
  pool: string;
  sessionsMoving: number;
  sessionsTotal: number;
  /** share of hash keys that would move (hash pools), else null */
  hashKeyShare: number | null;
  /** share of new sessions the backend would take (add) or give up (drain) */
  newSessionShare: number;
  notes: string[];
}

export interface ExplainResult {
  pool: string;
  mode: string;
  steps: string[];
  backend: string | null;
  result: string;
}

export interface BroadcastResult {
  pool: string;
  method: string;
  path: string;
  results: Array<{ backend: string; status: number | null; error: string | null; ms: number; body: string }>;
}
