/**
 * ADR 0063: a node cut off over the grid from the members that keep renewing fences itself (stops
 * renewing its lease) when it is on the smaller side; `fenceFrom` is the rule, checked here on
 * random clusters split in two, with dead or hung peers, and before the cut has lasted long enough.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fenceFrom, type PeerReachState } from '../src/membership/reach.js';

const T = { cutMs: 1000, renewedAfterMs: 500, cutRequests: 3 };
const NOW = 100_000;

/** What `self` sees of `peer`: answering (same side), or cut off since `cutAt` and seen renewing at `renewedAt`. */
function seen(peer: string, reached: boolean, cutAt: number, renewedAt: number | undefined, failures = 3): PeerReachState {
  return reached ? { id: peer, okAt: NOW - 100, failingSince: null, failures: 0, renewedAt } : { id: peer, okAt: cutAt - 250, failingSince: cutAt, failures, renewedAt };
}

const clusters = fc
  .integer({ min: 2, max: 7 })
  .chain((n) => fc.tuple(fc.constant(Array.from({ length: n }, (_, i) => `node-${i + 1}`)), fc.array(fc.boolean(), { minLength: n, maxLength: n })))
  .filter(([, side]) => side.some((x) => x) && side.some((x) => !x));

describe('fenceFrom (ADR 0063)', () => {
  it('property: a cluster split in two over the grid, everyone renewing: exactly the smaller side fences (a tie: the side without the lowest id)', () => {
    fc.assert(
      fc.property(clusters, fc.integer({ min: 1000, max: 20_000 }), ([ids, side], cutFor) => {
        const cutAt = NOW - cutFor;
        const a = ids.filter((_, i) => side[i]);
        const b = ids.filter((_, i) => !side[i]);
        const fences = (self: string): boolean => {
          const mine = a.includes(self) ? a : b;
          const peers = ids.filter((p) => p !== self).map((p) => seen(p, mine.includes(p), cutAt, NOW - 50));
          return fenceFrom(self, peers, NOW, T) !== null;
        };
        const loser = a.length < b.length ? a : b.length < a.length ? b : a.includes('node-1') ? b : a;
        for (const id of ids) expect(fences(id)).toBe(loser.includes(id));
      }),
    );
  });

  it('property: peers that died or hung (no renewal after they stopped answering) never make a node fence', () => {
    fc.assert(
      fc.property(clusters, fc.integer({ min: 1000, max: 20_000 }), fc.integer({ min: -5000, max: 499 }), ([ids, dead], cutFor, lastRenewal) => {
        const cutAt = NOW - cutFor;
        const alive = ids.filter((_, i) => !dead[i]);
        for (const self of alive) {
          const peers = ids.filter((p) => p !== self).map((p) => (alive.includes(p) ? seen(p, true, cutAt, NOW - 50) : seen(p, false, cutAt, cutAt + lastRenewal)));
          expect(fenceFrom(self, peers, NOW, T)).toBeNull();
        }
      }),
    );
  });

  it('property: nobody fences before the cut has lasted cutMs', () => {
    fc.assert(
      fc.property(clusters, fc.integer({ min: 0, max: 999 }), ([ids, side], cutFor) => {
        const cutAt = NOW - cutFor;
        const a = ids.filter((_, i) => side[i]);
        const b = ids.filter((_, i) => !side[i]);
        for (const self of ids) {
          const mine = a.includes(self) ? a : b;
          const peers = ids.filter((p) => p !== self).map((p) => seen(p, mine.includes(p), cutAt, NOW - 1));
          expect(fenceFrom(self, peers, NOW, T)).toBeNull();
        }
      }),
    );
  });

  it('property: after a pause of this process (one or two requests in flight timed out at once), nobody fences', () => {
    fc.assert(
      fc.property(clusters, fc.integer({ min: 1000, max: 20_000 }), fc.integer({ min: 1, max: 2 }), ([ids, side], cutFor, failures) => {
        const cutAt = NOW - cutFor;
        const a = ids.filter((_, i) => side[i]);
        const b = ids.filter((_, i) => !side[i]);
        for (const self of ids) {
          const mine = a.includes(self) ? a : b;
          const peers = ids.filter((p) => p !== self).map((p) => seen(p, mine.includes(p), cutAt, NOW - 1, failures));
          expect(fenceFrom(self, peers, NOW, T)).toBeNull();
        }
      }),
    );
  });

  it('one node cut off from two renewing peers fences and names them; the two do not', () => {
    const cutAt = NOW - 1500;
    expect(fenceFrom('node-3', [seen('node-1', false, cutAt, NOW - 10), seen('node-2', false, cutAt, NOW - 10)], NOW, T)).toEqual(['node-1', 'node-2']);
    expect(fenceFrom('node-1', [seen('node-2', true, cutAt, NOW - 10), seen('node-3', false, cutAt, NOW - 10)], NOW, T)).toBeNull();
    // Two nodes, cut from each other: the one without the lowest id fences.
    expect(fenceFrom('node-2', [seen('node-1', false, cutAt, NOW - 10)], NOW, T)).toEqual(['node-1']);
    expect(fenceFrom('node-1', [seen('node-2', false, cutAt, NOW - 10)], NOW, T)).toBeNull();
    // A peer never seen renewing counts as neither side.
    expect(fenceFrom('node-2', [seen('node-1', false, cutAt, undefined)], NOW, T)).toBeNull();
  });
});
