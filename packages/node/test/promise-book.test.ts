/**
 * The promise rules on one node's real ClusterView (ADR 0007 rules 2–4): an owner promises only
 * the partitions whose primary the asker is (under its epoch) in its newest topology, and a node
 * may not serve a partition as primary while a promise it gave for it is outstanding, whatever
 * its lease says.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryControlPlane, resolveNodeOptions, silentLogger, type LeaseRecord } from '@gridlink/node';
import { initialTopology } from '../src/control/topology.js';
import { Lifecycle } from '../src/lifecycle.js';
import { PromiseBook, promiseTiming } from '../src/membership/promises.js';
import { ClusterView } from '../src/membership/view.js';
import type { PeerLinks } from '../src/peers/links.js';
import { Scheduler } from '../src/scheduler.js';

const epochs = new Map(['a', 'b', 'c'].map((id) => [id, randomUUID()]));
const epochOf = (id: string): ReturnType<typeof randomUUID> => epochs.get(id)!;
const lease = (id: string): LeaseRecord => ({ id, epoch: epochOf(id), host: '127.0.0.1', port: 1, synced: {} });

function bookOf(id: string, partitions: number, ids: string[]): { book: PromiseBook; view: ClusterView } {
  const opts = resolveNodeOptions({ id, controlPlane: new MemoryControlPlane(), partitions, backups: 1, logger: silentLogger });
  const view = new ClusterView(id, partitions, new Scheduler(), () => true);
  view.epoch = epochOf(id);
  view.set(initialTopology({ clusterId: 'c', partitions, backups: 1, leases: ids.map(lease) }));
  const life = new Lifecycle();
  life.state = 'running';
  // Peers are used only to ask for promises, which these tests do not do.
  const book = new PromiseBook({ id, opts, view, peers: {} as PeerLinks, scheduler: new Scheduler(), life, log: silentLogger, leaseRemainingMs: () => 1000 });
  return { book, view };
}

describe('promise book', () => {
  it('timings: a dead primary’s last promise runs out before it can be declared gone', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 60_000 }), fc.integer({ min: 1, max: 99 }), fc.integer({ min: 1, max: 20 }), (leaseMs, renewPct, tick) => {
        const renewIntervalMs = Math.max(1, Math.floor((leaseMs * renewPct) / 200));
        const t = promiseTiming({ leaseMs, renewIntervalMs, coordinatorIntervalMs: tick, leaseMarginMs: Math.floor(leaseMs / 10) });
        expect(t.promiseMs).toBeLessThanOrEqual(Math.max(1, leaseMs - renewIntervalMs - tick));
        expect(t.marginMs).toBeLessThan(t.promiseMs + 1);
      }),
    );
  });

  it('promises exactly the partitions the asker is primary of, under its epoch; then will not serve them while promised', () => {
    const ids = ['a', 'b', 'c'];
    const { book, view } = bookOf('b', 16, ids);
    const topo = view.topo!;
    const all = Array.from({ length: 16 }, (_, p) => p);
    const ofA = all.filter((p) => topo.owners[p]?.[0] === 'a');
    const ofB = all.filter((p) => topo.owners[p]?.[0] === 'b');
    expect(ofA.length).toBeGreaterThan(0);
    expect(ofB.length).toBeGreaterThan(0);
    // A stale epoch of the asker gets nothing.
    expect(book.onRequest({ from: 'a', epoch: 'old', parts: all }).parts).toEqual([]);
    for (const p of all) expect(book.mayServe(p, true)).toBe(true);
    // Asking for everything: only a's partitions are promised.
    const r = book.onRequest({ from: 'a', epoch: epochOf('a'), parts: [...all, -1, 99, 1.5] });
    expect(r.epoch).toBe(epochOf('b'));
    expect(r.parts).toEqual(ofA);
    // Promised partitions: not served by b even with a valid lease (it might become their primary).
    for (const p of ofA) expect(book.mayServe(p, true)).toBe(false);
    for (const p of ofB) expect(book.mayServe(p, true)).toBe(true);
  });

  it('without a valid lease, a primary serves only what it holds promises for (none held here)', () => {
    const { book, view } = bookOf('a', 8, ['a', 'b']);
    for (const p of view.primaryPartitions()) {
      expect(book.mayServe(p, true)).toBe(true);
      expect(book.mayServe(p, false)).toBe(false);
    }
  });
});
