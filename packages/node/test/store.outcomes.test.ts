/**
 * Exactly-once outcomes bounded by the client's acknowledged floor (`ack`, ADR 0018): what a
 * client may still retry keeps its first outcome; what it acknowledged is forgotten at once, on
 * the primary and on replicas, and comes back only as a refused stale duplicate.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Op } from '@gridlink/protocol';
import { SeqWindow } from '@gridlink/client/internal';
import { NodeStore, StoreError, type ReplicationRecord } from '../src/store/index.js';
import { FakeClock, b } from './store-helpers.js';

const PARTS = [0, 1, 2, 3];
/** Long enough that only floors forget outcomes in these tests. */
const WINDOW = 1e9;

interface Sent {
  seq: number;
  p: number;
  payload: Record<string, unknown>;
  first: unknown;
  settled: boolean;
}

type Cmd = { k: 'issue'; p: number } | { k: 'settle'; pick: number } | { k: 'retry'; pick: number } | { k: 'stale'; pick: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('issue' as const), p: fc.constantFrom(...PARTS) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('settle' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('retry' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('stale' as const), pick: fc.nat() }) },
);

function refusedReason(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(StoreError);
    return (e as StoreError).reason;
  }
}

describe('outcomes bounded by the acknowledged floor', () => {
  it('a retry of any seq at or above the floor returns its first outcome; outcomes held never exceed what may be retried', () => {
    fc.assert(
      fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 120 }), (cmds) => {
        const clock = new FakeClock();
        const primary = new NodeStore({ clock, dedupWindowMs: WINDOW });
        const backup = new NodeStore({ clock, dedupWindowMs: WINDOW });
        const win = new SeqWindow();
        const sent: Sent[] = [];
        let maxAck = 0;
        const replicate = (p: number, rec: ReplicationRecord | null): void => {
          if (rec !== null) expect(backup.applyRecord(p, rec)).toBe(true);
        };
        for (const c of cmds) {
          clock.advance(1);
          if (c.k === 'issue') {
            const seq = win.next();
            const ack = win.floor;
            maxAck = Math.max(maxAck, ack);
            const payload = { cache: 'n', key: b(`k${c.p}`), delta: 1, seq, ack };
            const r = primary.mutate(c.p, Op.CACHE_INCREMENT, payload, 's');
            replicate(c.p, r.record);
            sent.push({ seq, p: c.p, payload, first: r.result, settled: false });
          } else if (c.k === 'settle') {
            const open = sent.filter((s) => !s.settled);
            if (open.length === 0) continue;
            const s = open[c.pick % open.length]!;
            s.settled = true;
            win.settle(s.seq);
          } else if (c.k === 'retry') {
            // Only what is not settled may be retried by the client.
            const open = sent.filter((s) => !s.settled);
            if (open.length === 0) continue;
            const s = open[c.pick % open.length]!;
            const counter = primary.updateCounter(s.p);
            const r = primary.mutate(s.p, Op.CACHE_INCREMENT, s.payload, 's');
            expect(r.result).toEqual(s.first);
            expect(r.record).toBeNull();
            expect(primary.updateCounter(s.p)).toBe(counter);
          } else {
            // A stale duplicate (seq below an ack the node has seen) is refused and changes nothing.
            const below = sent.filter((s) => s.seq < maxAck);
            if (below.length === 0) continue;
            const s = below[c.pick % below.length]!;
            const counter = primary.updateCounter(s.p);
            expect(refusedReason(() => primary.mutate(s.p, Op.CACHE_INCREMENT, s.payload, 's'))).toBe('seq-acknowledged');
            expect(primary.updateCounter(s.p)).toBe(counter);
          }
          // Bound: outcomes held are at most the seqs in [floor sent, last seq sent].
          const last = sent.length === 0 ? 0 : sent[sent.length - 1]!.seq;
          const bound = last === 0 ? 0 : last - maxAck + 1;
          expect(primary.stats().dedupEntries).toBeLessThanOrEqual(bound);
          expect(backup.stats().dedupEntries).toBeLessThanOrEqual(bound);
        }
        // Every seq at or above the floor still answers with its first outcome, on both replicas.
        for (const s of sent) {
          if (s.seq < maxAck) continue;
          for (const st of [primary, backup]) {
            const r = st.mutate(s.p, Op.CACHE_INCREMENT, s.payload, 's');
            expect(r.result).toEqual(s.first);
            expect(r.record).toBeNull();
          }
        }
        // And the counters count each increment once.
        for (const p of PARTS) {
          const n = sent.filter((s) => s.p === p).length;
          const got = primary.read(p, Op.CACHE_GET, { cache: 'n', key: b(`k${p}`) }) as { value: Uint8Array | null };
          if (n === 0) expect(got.value).toBeNull();
          else expect(got.value).toEqual(Uint8Array.from(n < 128 ? [n] : [0xcc, n]));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a sequential client leaves at most one outcome per node, primary and backup alike', () => {
    const clock = new FakeClock();
    const primary = new NodeStore({ clock });
    const backup = new NodeStore({ clock });
    const win = new SeqWindow();
    for (let i = 0; i < 5000; i++) {
      const seq = win.next();
      const p = i % 7;
      const r = primary.mutate(p, Op.CACHE_PUT, { cache: 'c', key: b(`k${i}`), value: b('v'), seq, ack: win.floor }, 's');
      expect(backup.applyRecord(p, r.record!)).toBe(true);
      win.settle(seq);
      expect(primary.stats().dedupEntries).toBeLessThanOrEqual(1);
      expect(backup.stats().dedupEntries).toBeLessThanOrEqual(1);
    }
    // Without ack (an older client) every outcome is kept for the window.
    const old = new NodeStore({ clock });
    for (let i = 1; i <= 100; i++) old.mutate(0, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq: i }, 'old');
    expect(old.stats().dedupEntries).toBe(100);
  });

  it('the floor is per session, travels in snapshots, and an idle session is forgotten after the window', () => {
    const clock = new FakeClock();
    const a = new NodeStore({ clock, dedupWindowMs: 1000 });
    for (let seq = 1; seq <= 10; seq++) a.mutate(1, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq, ack: seq }, 's');
    // Another session is unaffected by s's floor.
    a.mutate(1, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('w'), seq: 3 }, 'other');
    expect(refusedReason(() => a.mutate(1, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq: 4 }, 's'))).toBe('seq-acknowledged');
    // A node that receives partition 2 by state transfer refuses s's stale seqs there too.
    const b2 = new NodeStore({ clock, dedupWindowMs: 1000 });
    b2.install(2, a.snapshot(2));
    expect(refusedReason(() => b2.mutate(2, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq: 9 }, 's'))).toBe('seq-acknowledged');
    expect(b2.mutate(2, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq: 10 }, 's').record).not.toBeNull();
    // ack above seq is bad input.
    expect(refusedReason(() => a.mutate(1, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq: 20, ack: 21 }, 's'))).toBe('bad-request');
    // After a window of silence the session (and its floor) is forgotten.
    clock.advance(1001);
    for (let i = 0; i < 10; i++) a.sweep(100);
    expect(a.stats().dedupEntries).toBe(0);
    expect(a.snapshot(1).floors).toBeUndefined();
  });
});
