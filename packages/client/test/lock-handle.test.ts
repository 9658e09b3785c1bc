/**
 * Lock handles: automatic renewal of all of a client's locks on one timer (RenewalScheduler), and
 * the handle's signal, made on first read, aborting on release or loss whenever it is read, and
 * `onLost` listeners, called on a loss only.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient, LockNotHeldError, type GridError, type LockHandle } from '@gridlink/client';
import { RenewalScheduler, stopRenewal } from '@gridlink/client/internal';
import { oneNodeGrid } from './helpers/grid.js';
import { nextEvent, waitFor } from './helpers/wait.js';

/** A stand-in handle that records when its renewal came due. */
function fakeHandle(fired: string[], name: string): LockHandle {
  return { renewDue: () => fired.push(name) } as unknown as LockHandle;
}

describe('RenewalScheduler', () => {
  it('renews each scheduled handle once, earliest first, and never a cancelled one', async () => {
    const fired: string[] = [];
    const s = new RenewalScheduler(() => undefined);
    const now = performance.now();
    const late = fakeHandle(fired, 'late');
    const early = fakeHandle(fired, 'early');
    const cancelled = fakeHandle(fired, 'cancelled');
    const moved = fakeHandle(fired, 'moved');
    s.scheduleRenew(late, now + 60);
    // Scheduled after, due before: the armed timer moves earlier.
    s.scheduleRenew(early, now + 5);
    s.scheduleRenew(cancelled, now + 20);
    s.cancelRenew(cancelled);
    // A second schedule replaces the first.
    s.scheduleRenew(moved, now + 1);
    s.scheduleRenew(moved, now + 40);
    await waitFor(() => fired.length >= 3, 5000, 'three renewals');
    expect(fired).toEqual(['early', 'moved', 'late']);
    expect(s.size).toBe(0);
    s.stop();
  });

  it('property: any schedule of due times and cancellations fires exactly the uncancelled, in due order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ delay: fc.integer({ min: 0, max: 30 }), cancel: fc.boolean() }), { minLength: 1, maxLength: 12 }),
        async (plan) => {
          const fired: string[] = [];
          const s = new RenewalScheduler(() => undefined);
          const now = performance.now();
          const handles = plan.map((_, i) => fakeHandle(fired, String(i)));
          plan.forEach((p, i) => s.scheduleRenew(handles[i] as LockHandle, now + p.delay));
          plan.forEach((p, i) => {
            if (p.cancel) s.cancelRenew(handles[i] as LockHandle);
          });
          const expected = plan
            .map((p, i) => ({ ...p, i }))
            .filter((p) => !p.cancel)
            .sort((a, b) => a.delay - b.delay || a.i - b.i);
          await waitFor(() => fired.length >= expected.length, 5000, 'renewals');
          // Ties and timer coalescing may reorder handles due within one firing; never across delays.
          const firedDelays = fired.map((name) => (plan[Number(name)] as { delay: number }).delay);
          expect([...firedDelays].sort((a, b) => a - b)).toEqual(expected.map((p) => p.delay));
          expect(new Set(fired)).toEqual(new Set(expected.map((p) => String(p.i))));
          expect(s.size).toBe(0);
          s.stop();
        },
      ),
      { numRuns: 25 },
    );
  });

  it('after stop() nothing is scheduled', () => {
    const fired: string[] = [];
    const s = new RenewalScheduler(() => undefined);
    s.stop();
    s.scheduleRenew(fakeHandle(fired, 'x'), performance.now());
    expect(s.size).toBe(0);
  });
});

describe('lock handles against a cluster', () => {
  const grid = oneNodeGrid();

  it('a signal read while held aborts on release; one read after release is already aborted', async () => {
    const a = await grid.client.lock('sig-1').acquire();
    const before = a.signal;
    expect(before.aborted).toBe(false);
    await a.release();
    expect(before.aborted).toBe(true);
    expect(before.reason).toBeInstanceOf(LockNotHeldError);
    expect(a.held).toBe(false);

    const b = await grid.client.lock('sig-2').acquire();
    const lost: GridError[] = [];
    b.onLost((e) => lost.push(e));
    await b.release();
    // Not a loss: a renewal after release is refused, but the release listener is not called.
    await expect(b.renew()).rejects.toBeInstanceOf(LockNotHeldError);
    b.onLost((e) => lost.push(e));
    await Promise.resolve();
    expect(lost).toEqual([]);
    expect(b.signal.aborted).toBe(true);
    expect(b.signal.reason).toBeInstanceOf(LockNotHeldError);
  });

  it('a lost lock (lease ran out, taken by another) aborts its signal and reports the loss once, read before or after', async () => {
    for (const readBefore of [true, false]) {
      const key = `lost-${String(readBefore)}`;
      const h = await grid.client.lock(key).acquire({ leaseMs: 100 });
      const early = readBefore ? h.signal : null;
      const lostBefore: GridError[] = [];
      h.onLost((e) => lostBefore.push(e));
      const other = await GridClient.connect({ endpoints: grid.cluster.endpoints });
      try {
        let taken: LockHandle | null = null;
        await waitFor(
          async () => {
            taken = await other.lock(key).tryAcquire();
            return taken !== null;
          },
          10_000,
          'the other client takes the expired lock',
        );
        const lostEvent = nextEvent(grid.client, 'error', (e: GridError) => e instanceof LockNotHeldError, 5000);
        await expect(h.renew()).rejects.toBeInstanceOf(LockNotHeldError);
        await lostEvent;
        expect(h.held).toBe(false);
        const signal = early ?? h.signal;
        expect(signal.aborted).toBe(true);
        expect(signal.reason).toBeInstanceOf(LockNotHeldError);
        expect(lostBefore).toHaveLength(1);
        expect(lostBefore[0]).toBe(signal.reason);
        // A listener added after the loss hears of it at once.
        const lostAfter = await new Promise<GridError>((resolve) => h.onLost(resolve));
        expect(lostAfter).toBe(signal.reason);
        // Releasing a lost lock sends a release the node refuses; the signal keeps the loss reason.
        await expect(h.release()).rejects.toBeInstanceOf(LockNotHeldError);
        expect(signal.reason).toBe(h.signal.reason);
        await (taken as LockHandle | null)?.release();
      } finally {
        await other.close();
      }
    }
  });

  it('many auto-renewed locks with different leases all stay held past their leases; released ones stop renewing', async () => {
    const handles = await Promise.all(
      Array.from({ length: 20 }, (_, i) => grid.client.lock(`renew-${i}`).acquire({ leaseMs: i % 2 === 0 ? 150 : 450, autoRenew: true })),
    );
    const released = handles.slice(0, 5);
    await Promise.all(released.map((h) => h.release()));
    const counts = released.map((h) => h.renewals);
    const t0 = performance.now();
    await waitFor(() => performance.now() - t0 > 500 && handles.slice(5).every((h) => h.renewals >= 1), 10_000, 'renewals of every held lock');
    for (const h of handles.slice(5)) expect(h.held).toBe(true);
    expect(released.map((h) => h.renewals)).toEqual(counts);
    // Held past their leases: no other client can take them.
    const other = await GridClient.connect({ endpoints: grid.cluster.endpoints });
    try {
      for (let i = 5; i < 20; i++) expect(await other.lock(`renew-${i}`).tryAcquire()).toBeNull();
    } finally {
      await other.close();
    }
    await Promise.all(handles.slice(5).map((h) => h.release()));
  });
});

describe('stopRenewal (@gridlink/client/internal)', () => {
  const grid = oneNodeGrid();

  it('ends a handle\'s automatic renewal without releasing: the lock stays held until its lease ends', async () => {
    const a = await GridClient.connect({ endpoints: grid.cluster.endpoints });
    const b = await GridClient.connect({ endpoints: grid.cluster.endpoints });
    try {
      const h = await a.lock('stop-renewal').acquire({ leaseMs: 150, autoRenew: true });
      await waitFor(() => h.renewals >= 1, 5000, 'a first automatic renewal');
      expect(a.bookkeeping().renewals).toBe(1);
      stopRenewal(h);
      expect(a.bookkeeping().renewals).toBe(0);
      expect(h.held).toBe(true);
      const renewed = h.renewals;
      // With no renewal the lease runs out and another client gets the lock.
      let taken: LockHandle | null = null;
      await waitFor(async () => (taken = await b.lock('stop-renewal').tryAcquire()) !== null, 10_000, 'the other client takes the lock');
      expect(h.renewals).toBe(renewed);
      await (taken as LockHandle | null)?.release();
      // Not on the public handle: the hook lives in the internal entry only.
      // @ts-expect-error `stop` is not a public member of LockHandle
      void h.stop;
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('a lost lock with nobody listening for error', () => {
  it('goes to the logger instead of being dropped, and onLost still hears of it', async () => {
    const cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8 });
    const logged: { msg: string; fields?: Record<string, unknown> }[] = [];
    const client = await GridClient.connect({
      endpoints: cluster.endpoints,
      requestTimeout: 100,
      operationTimeout: 300,
      heartbeatInterval: 1000,
      logger: { error: (msg: string, fields?: Record<string, unknown>) => logged.push({ msg, fields }) },
    });
    const nodeId = cluster.nodeIds[0]!;
    try {
      expect(client.listenerCount('error')).toBe(0);
      const h = await client.lock('unheard').acquire({ leaseMs: 300, autoRenew: true });
      const lost = new Promise<GridError>((resolve) => h.onLost(resolve));
      // The only node stops answering: the next renewal times out and the lock is lost. Before,
      // the client emitted `error` to nobody and the loss left no trace outside the handle.
      cluster.hang(nodeId);
      const err = await lost;
      expect(h.held).toBe(false);
      await waitFor(() => logged.length > 0, 5000, 'the loss logged');
      expect(logged[0]!.msg).toBe(err.message);
      expect(logged[0]!.fields).toMatchObject({ code: err.code });
    } finally {
      cluster.resume(nodeId);
      await client.close();
      await cluster.stop();
    }
  });
});
