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
import { PromiseBook, promiseTiming, type PromiseRequest } from '../src/membership/promises.js';
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

describe('asking for promises while the lease runs short', () => {
  /** Books of `ids` on one topology; their peers answer each other's asks with onRequest, counted. */
  function books(ids: string[], partitions: number, shortLease: string) {
    const replies = { n: 0 };
    const schedulers: Scheduler[] = [];
    const all = new Map<string, { book: PromiseBook; view: ClusterView }>();
    const topo = initialTopology({ clusterId: 'c', partitions, backups: 1, leases: ids.map(lease) });
    for (const id of ids) {
      const opts = resolveNodeOptions({ id, controlPlane: new MemoryControlPlane(), partitions, backups: 1, logger: silentLogger });
      const view = new ClusterView(id, partitions, new Scheduler(), () => true);
      view.epoch = epochOf(id);
      view.set(topo);
      const life = new Lifecycle();
      life.state = 'running';
      const peers = {
        peer: (to: string) => ({
          request: (_op: number, payload: unknown) => {
            replies.n++;
            return Promise.resolve(all.get(to)!.book.onRequest(payload as PromiseRequest));
          },
        }),
      } as unknown as PeerLinks;
      const scheduler = new Scheduler();
      schedulers.push(scheduler);
      const book = new PromiseBook({ id, opts, view, peers, scheduler, life, log: silentLogger, leaseRemainingMs: () => (id === shortLease ? 0 : 1000) });
      all.set(id, { book, view });
    }
    return { all, replies, topo, stop: () => schedulers.forEach((s) => s.stop()) };
  }

  async function until(pred: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it('works out what to ask for once per topology, not on every asking interval, and serves on the promises held', async () => {
    const { all, replies, topo, stop } = books(['a', 'b', 'c'], 256, 'a');
    try {
      const a = all.get('a')!;
      const mine = a.view.primaryPartitions();
      expect(mine.length).toBeGreaterThan(0);
      a.book.start();
      await until(() => mine.every((p) => a.book.mayServe(p, false)), 'promises for every partition of a');
      // Many asking intervals, every one answered in full: the plan was made once.
      const seen = replies.n;
      await until(() => replies.n >= seen + 20, 'twenty more replies');
      expect(a.book.planBuilds).toBe(1);
      for (let p = 0; p < 256; p++) expect(a.book.mayServe(p, false)).toBe(mine.includes(p));
      expect(a.book.heldCount).toBe(2);
      // A new topology: made again once.
      const next = { ...topo, version: topo.version + 1 };
      for (const { view } of all.values()) view.set(next);
      await until(() => a.book.planBuilds === 2 && replies.n >= seen + 30, 'asks on the new topology');
      expect(a.book.planBuilds).toBe(2);
      for (const p of mine) expect(a.book.mayServe(p, false)).toBe(true);
    } finally {
      stop();
    }
  });

  it('a partial grant (the owner holds another topology) covers exactly the partitions granted', async () => {
    const { all, topo, stop } = books(['a', 'b'], 64, 'a');
    try {
      const a = all.get('a')!;
      const b = all.get('b')!;
      const mine = a.view.primaryPartitions();
      // b's newest topology gives half of a's partitions to b.
      const taken = new Set(mine.filter((_, i) => i % 2 === 0));
      b.view.set({ ...topo, version: topo.version + 1, owners: topo.owners.map((o, p) => (taken.has(p) ? ['b', 'a'] : o)) });
      a.book.start();
      await until(() => mine.some((p) => a.book.mayServe(p, false)), 'some promises');
      for (const p of mine) expect(a.book.mayServe(p, false)).toBe(!taken.has(p));
    } finally {
      stop();
    }
  });
});
