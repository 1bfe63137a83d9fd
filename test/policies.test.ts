import { describe, expect, it } from 'vitest';
import { RoundRobin } from '../src/balancer/round-robin.js';
import { LeastConnections } from '../src/balancer/least-connections.js';
import { PowerOfTwo } from '../src/balancer/p2c.js';
import type { Backend } from '../src/balancer/types.js';
import { fakeBackend, seeded } from './helpers/fakes.js';

const w = (b: Backend): number => b.weight;

describe('round-robin (smooth weighted)', () => {
  it.each([
    { weights: [1, 1, 1], trace: 'abcabc' },
    { weights: [5, 1, 1], trace: 'aabacaa' },
    { weights: [2, 1], trace: 'abaaba' },
    { weights: [1, 2, 3], trace: 'cbacbc' },
  ])('weights $weights → $trace', ({ weights, trace }) => {
    const bs = weights.map((wt, i) => fakeBackend('abc'[i], wt));
    const rr = new RoundRobin();
    const got = Array.from({ length: trace.length }, () => rr.pick(bs, w).id).join('');
    expect(got).toBe(trace);
  });

  it('keeps exact ratios over many picks and adapts when a backend leaves', () => {
    const bs = [fakeBackend('a', 3), fakeBackend('b', 1)];
    const rr = new RoundRobin();
    const counts: Record<string, number> = { a: 0, b: 0 };
    for (let i = 0; i < 400; i++) counts[rr.pick(bs, w).id]++;
    expect(counts).toEqual({ a: 300, b: 100 });
    expect(new Set(Array.from({ length: 5 }, () => rr.pick([bs[1]], w).id))).toEqual(new Set(['b']));
  });
});

describe('least-connections (weighted)', () => {
  it.each([
    { loads: [3, 0, 5], weights: [1, 1, 1], want: 'b' },
    { loads: [2, 2, 2], weights: [1, 3, 1], want: 'b' },
    { loads: [4, 1, 9], weights: [4, 1, 1], want: 'a' }, // (4+1)/4 < (1+1)/1
  ])('loads $loads weights $weights → $want', ({ loads, weights, want }) => {
    const bs = loads.map((l, i) => fakeBackend('abc'[i], weights[i], { inFlight: l }));
    expect(new LeastConnections({ random: seeded(1) }).pick(bs, w).id).toBe(want);
  });

  it('counts open WebSockets as load', () => {
    const bs = [fakeBackend('a', 1, { websockets: 10 }), fakeBackend('b', 1, { inFlight: 2 })];
    expect(new LeastConnections({ random: seeded(1) }).pick(bs, w).id).toBe('b');
  });

  it('breaks ties at random, evenly', () => {
    const bs = ['a', 'b', 'c'].map((id) => fakeBackend(id));
    const lc = new LeastConnections({ random: seeded(7) });
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 3000; i++) counts[lc.pick(bs, w).id]++;
    for (const n of Object.values(counts)) expect(Math.abs(n - 1000)).toBeLessThan(150);
  });
});

describe('p2c', () => {
  it('never picks the busier of the two it samples, and spreads by weight when idle', () => {
    const bs = [fakeBackend('a', 1), fakeBackend('b', 2), fakeBackend('c', 1)];
    const p = new PowerOfTwo({ random: seeded(3) });
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 4000; i++) counts[p.pick(bs, w).id]++;
    expect(counts.b).toBeGreaterThan(counts.a);
    expect(counts.b).toBeGreaterThan(counts.c);
    bs[0].inFlight = 100;
    bs[1].inFlight = 100;
    const busy = Array.from({ length: 200 }, () => p.pick(bs, w).id);
    // c is picked whenever it is one of the two sampled.
    expect(busy.filter((id) => id === 'c').length).toBeGreaterThan(60);
  });

  it('with one candidate returns it', () => {
    const only = fakeBackend('x');
    expect(new PowerOfTwo({ random: seeded(1) }).pick([only], w)).toBe(only);
  });
});
