import type { Affinity, Lookup } from './types.js';

/** `mode: none`: plain balancing, nothing remembered. */
export class NoAffinity implements Affinity {
  readonly mode = 'none' as const;
  lookup(): Lookup {
    return { kind: 'none' };
  }
  persist(): undefined {
    return undefined;
  }
  hold(): () => void {
    return () => undefined;
  }
  liveSessions(): number {
    return 0;
  }
  forgetBackend(): void {}
  sweep(): void {}
}
