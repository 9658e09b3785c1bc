/**
 * A lock belongs to the handle that acquired it (ADR 0020), against a real LocalCluster with
 * real clients: two acquisitions through one GridClient exclude each other exactly as across
 * clients, release and renew act only for their own handle, a refused acquisition tells how long
 * the holder still holds, and a dead client's locks are freed when their leases end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LockTimeoutError, type GridClient, type LockHandle } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { connectClient } from './helpers/grid.js';

const CLIENTS = 2;
const HANDLES = 6; // handle slot i acquires through client i % CLIENTS
const LEASE = 60_000; // never runs out during a run: the model has no clock

interface Model {
  holder: number | null;
  lastToken: number;
}
interface Real {
  clients: GridClient[];
  key: string;
  handles: (LockHandle | null)[];
}

class Acquire implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly slot: number,
    readonly how: 'tryAcquire' | 'attempt',
  ) {}
  check = (m: Readonly<Model>): boolean => m.holder !== this.slot;
  async run(m: Model, r: Real): Promise<void> {
    const lock = r.clients[this.slot % CLIENTS]!.lock(r.key);
    let handle: LockHandle | null;
    if (this.how === 'tryAcquire') handle = await lock.tryAcquire({ leaseMs: LEASE });
    else {
      const res = await lock.attempt({ leaseMs: LEASE });
      if (res.acquired) handle = res.handle;
      else {
        handle = null;
        expect(res.heldForMs).toBeGreaterThan(0);
        expect(res.heldForMs).toBeLessThanOrEqual(LEASE);
      }
    }
    expect(handle !== null).toBe(m.holder === null);
    if (handle === null) return;
    expect(handle.fencingToken).toBeGreaterThan(m.lastToken);
    m.lastToken = handle.fencingToken;
    m.holder = this.slot;
    r.handles[this.slot] = handle;
  }
  toString = (): string => `${this.how}(${this.slot})`;
}

class Release implements fc.AsyncCommand<Model, Real> {
  constructor(readonly slot: number) {}
  check = (m: Readonly<Model>): boolean => m.holder === this.slot;
  async run(m: Model, r: Real): Promise<void> {
    await r.handles[this.slot]!.release(); // throws LockNotHeldError unless the node released it
    r.handles[this.slot] = null;
    m.holder = null;
  }
  toString = (): string => `release(${this.slot})`;
}

class Renew implements fc.AsyncCommand<Model, Real> {
  constructor(readonly slot: number) {}
  check = (m: Readonly<Model>): boolean => m.holder === this.slot;
  async run(_m: Model, r: Real): Promise<void> {
    await r.handles[this.slot]!.renew({ leaseMs: LEASE });
  }
  toString = (): string => `renew(${this.slot})`;
}

describe('locks are held by handles', () => {
  let cluster: LocalCluster;
  let clients: GridClient[] = [];
  let run = 0;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 2, backups: 1, partitions: 16 });
    clients = await Promise.all(Array.from({ length: CLIENTS }, () => connectClient(cluster.endpoints)));
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.stop();
  });

  it('model: several handles per client and several clients never hold a lock together; tokens grow', async () => {
    const slot = fc.nat(HANDLES - 1);
    const commands = [
      slot.map((s) => new Acquire(s, 'tryAcquire')),
      slot.map((s) => new Acquire(s, 'attempt')),
      slot.map((s) => new Release(s)),
      slot.map((s) => new Renew(s)),
    ];
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 25 }), async (cmds) => {
        const real: Real = { clients, key: `model-${run++}`, handles: Array<LockHandle | null>(HANDLES).fill(null) };
        try {
          await fc.asyncModelRun(() => ({ model: { holder: null, lastToken: 0 }, real }), cmds);
        } finally {
          for (const h of real.handles) await h?.release().catch(() => undefined);
        }
      }),
      { numRuns: 25 },
    );
  });

  it('a second acquisition through the same client waits for the first and learns how long it holds', async () => {
    const [a] = clients;
    const first = await a!.lock('same-client').tryAcquire({ leaseMs: 5000 });
    expect(first).not.toBeNull();
    expect(await a!.lock('same-client').tryAcquire({ leaseMs: 5000 })).toBeNull();
    const err = await a!
      .lock('same-client')
      .acquire({ leaseMs: 5000, waitMs: 100 })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(LockTimeoutError);
    expect((err as LockTimeoutError).heldForMs).toBeGreaterThan(0);
    expect((err as LockTimeoutError).heldForMs).toBeLessThanOrEqual(5000);
    const refusedNoWait = await a!.withLock('same-client', () => 'ran', { noWait: true }).catch((e: unknown) => e);
    expect(refusedNoWait).toBeInstanceOf(LockTimeoutError);
    // Only the holder's release frees it; then the other acquisition gets it with a newer token.
    const waiting = a!.lock('same-client').acquire({ leaseMs: 5000, waitMs: 5000 });
    await first!.release();
    const second = await waiting;
    expect(second.fencingToken).toBeGreaterThan(first!.fencingToken);
    await second.release();
  });

  it("a client that goes away without releasing frees all its locks when their leases end", async () => {
    const gone = await connectClient(cluster.endpoints);
    const held = await Promise.all(['dead-1', 'dead-2'].map((k) => gone.lock(k).tryAcquire({ leaseMs: 400 })));
    expect(held.every((h) => h !== null)).toBe(true);
    await gone.close(); // stops nothing on the node: the leases run out on their own
    const [, b] = clients;
    for (const k of ['dead-1', 'dead-2']) {
      const h = await b!.lock(k).acquire({ leaseMs: 5000, waitMs: 5000 });
      await h.release();
    }
  });
});
