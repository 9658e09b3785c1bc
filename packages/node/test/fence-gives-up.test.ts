/**
 * ADR 0073: a fenced node (cut off from its peers while it reaches the control plane, ADR 0063;
 * or asked to stop renewing by the coordinator, ADR 0065) gives its lease up at once instead of
 * letting it run out: it stops serving that life first, then deletes its lease, so the coordinator
 * declares it gone a moment later instead of a lease after its last renewal. That life never
 * renews again; it comes back only under a new epoch, empty.
 */
import { describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { GridClosedError } from '@gridlink/client';
import { ErrorCode, Op } from '@gridlink/protocol';
import { CasConflictError, LEASE_PREFIX, MemoryControlPlane, TOPOLOGY_KEY, resolveNodeOptions, silentLogger, type KvEvent, type TopologyRecord } from '@gridlink/node';
import { Lifecycle } from '../src/lifecycle.js';
import { OwnLease } from '../src/membership/lease.js';
import { Scheduler } from '../src/scheduler.js';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { GridError, TestConnection } from './helpers/client.js';
import { THREE_PARTITIONS, perTestNodes, startThree } from './helpers/grid.js';
import { until } from './helpers/until.js';

describe('OwnLease on a fence (ADR 0073)', () => {
  const lease = (kv: FlakyControlPlane, state: { fenced: boolean; member: boolean; epoch: string; lives: number; mayGiveUp?: boolean }): OwnLease => {
    const life = new Lifecycle();
    life.state = 'running';
    return new OwnLease({
      id: 'n1',
      opts: resolveNodeOptions({ id: 'n1', controlPlane: kv, partitions: 8, backups: 1 }),
      kv,
      scheduler: new Scheduler(),
      log: silentLogger,
      life,
      epoch: () => state.epoch,
      port: () => 1,
      rejoinCheck: () => Promise.resolve(),
      fenced: () => state.fenced,
      isMember: () => state.member,
      mayGiveUp: () => state.fenced && (state.mayGiveUp ?? true),
      newLife: () => {
        state.lives++;
        state.epoch = `e${state.lives + 1}`;
      },
    });
  };

  /** A lease renewed once, then fenced: the life given up. */
  const givenUp = async (kv: FlakyControlPlane): Promise<{ l: OwnLease; state: { fenced: boolean; member: boolean; epoch: string; lives: number } }> => {
    const state = { fenced: false, member: true, epoch: 'e1', lives: 0 };
    const l = lease(kv, state);
    await l.renew();
    state.fenced = true;
    await l.renew();
    expect(l.gaveUp()).toBe(true);
    return { l, state };
  };

  it('stops serving at once, deletes the lease after the renewal in flight, never renews that life again, and starts a new one when the fence ends', async () => {
    const kv = new FlakyControlPlane();
    const state = { fenced: false, member: true, epoch: 'e1', lives: 0 };
    const l = lease(kv, state);
    await l.renew();
    expect(l.valid()).toBe(true);
    // A renewal in flight when the fence comes: the delete goes after it.
    kv.deleteAckDelayMs = 0;
    const inFlight = l.renew();
    state.fenced = true;
    await l.renew();
    // Synchronously: nothing of this life may be served from here on.
    expect(l.gaveUp()).toBe(true);
    expect(l.valid()).toBe(false);
    expect(l.renewed()).toBe(false);
    await inFlight;
    await until(() => kv.written.includes(`delete ${LEASE_PREFIX}n1`), 'the lease deleted');
    expect(kv.written).toEqual([`put ${LEASE_PREFIX}n1`, `put ${LEASE_PREFIX}n1`, `delete ${LEASE_PREFIX}n1`]);
    expect(await kv.peek(`${LEASE_PREFIX}n1`)).toBeNull();
    // Still fenced: nothing written, deleted once.
    await l.renew();
    await l.renew();
    expect(kv.written).toHaveLength(3);
    // The fence ends before the topology dropped this life: it starts a new one, and renews only that.
    state.fenced = false;
    await l.renew();
    expect(state.lives).toBe(1);
    expect(kv.written).toHaveLength(3);
    expect(l.gaveUp()).toBe(false);
    await l.renew();
    expect(kv.written).toHaveLength(4);
    expect((await kv.peek<{ epoch: string }>(`${LEASE_PREFIX}n1`))?.value.epoch).toBe('e2');
  });

  it('a delete that reaches the control plane after a later life renewed deletes nothing', async () => {
    // A control plane that applies deletes only when let through (a request held in a client).
    const inner = new FlakyControlPlane();
    let letThrough!: () => void;
    const gate = new Promise<void>((r) => (letThrough = r));
    const deletes: (string | Error)[] = [];
    const kv = Object.assign(Object.create(inner) as FlakyControlPlane, {
      delete: (key: string, revision?: number) =>
        gate.then(() =>
          inner.delete(key, revision).then(
            () => void deletes.push('deleted'),
            (err: unknown) => {
              deletes.push(err as Error);
              throw err;
            },
          ),
        ),
    });
    const { l, state } = await givenUp(kv);
    state.fenced = false;
    await l.renew(); // a new life, e2
    await l.renew(); // e2 renews
    expect((await inner.peek<{ epoch: string }>(`${LEASE_PREFIX}n1`))?.value.epoch).toBe('e2');
    letThrough();
    await until(() => deletes.length > 0, 'the late delete answered');
    expect(deletes[0]).toBeInstanceOf(CasConflictError);
    expect((await inner.peek<{ epoch: string }>(`${LEASE_PREFIX}n1`))?.value.epoch).toBe('e2');
  });

  it('on a control plane whose delete is not conditional, the life is given up but the lease is left to run out', async () => {
    // A custom plane written before delete took a revision: it would delete unconditionally.
    const inner = new FlakyControlPlane();
    const kv = Object.assign(Object.create(inner) as FlakyControlPlane, { conditionalDelete: undefined });
    const { l, state } = await givenUp(kv);
    expect(l.valid()).toBe(false);
    await l.renew();
    expect(inner.written).toEqual([`put ${LEASE_PREFIX}n1`]);
    expect((await inner.peek<{ epoch: string }>(`${LEASE_PREFIX}n1`))?.value.epoch).toBe('e1');
    // The fence ends: a new life, as when the delete went through.
    state.fenced = false;
    await l.renew();
    await l.renew();
    expect(state.lives).toBe(1);
    expect((await inner.peek<{ epoch: string }>(`${LEASE_PREFIX}n1`))?.value.epoch).toBe('e2');
  });

  it('a fence it may not give up (asked by the coordinator, or the only live holder of a partition) withholds renewals only, as before', async () => {
    const kv = new FlakyControlPlane();
    const state = { fenced: false, member: true, epoch: 'e1', lives: 0, mayGiveUp: false };
    const l = lease(kv, state);
    await l.renew();
    state.fenced = true;
    await l.renew();
    await l.renew();
    expect(l.gaveUp()).toBe(false);
    expect(kv.written).toEqual([`put ${LEASE_PREFIX}n1`]);
    // The fence ends: the same life renews again.
    state.fenced = false;
    await l.renew();
    expect(state.lives).toBe(0);
    expect(kv.written).toEqual([`put ${LEASE_PREFIX}n1`, `put ${LEASE_PREFIX}n1`]);
    expect((await kv.peek<{ epoch: string }>(`${LEASE_PREFIX}n1`))?.value.epoch).toBe('e1');
  });

  it('a life that is not a member yet has nothing to give up: it renews nothing while fenced, and renews again after', async () => {
    const kv = new FlakyControlPlane();
    const state = { fenced: true, member: false, epoch: 'e1', lives: 0 };
    const l = lease(kv, state);
    await l.renew();
    expect(l.gaveUp()).toBe(false);
    expect(kv.written).toEqual([]);
    state.fenced = false;
    await l.renew();
    expect(state.lives).toBe(0);
    expect(kv.written).toEqual([`put ${LEASE_PREFIX}n1`]);
  });
});

describe('a fenced node on a live cluster (ADR 0073)', () => {
  const { nodes, connectFast } = perTestNodes();

  it('serves nothing more, is declared gone long before its lease would have run out, and rejoins empty under a new epoch once the fence ends; no operation fails', async () => {
    const kv = new MemoryControlPlane();
    // A long lease: "before it would have run out" is then seconds, not a race with the machine.
    const LEASE_MS = 6000;
    await startThree(nodes, () => kv, { leaseMs: LEASE_MS });
    const c = await connectFast(nodes.map((n) => `127.0.0.1:${n.port}`));
    const cache = c.cache<string, number>('fence');
    for (let i = 0; i < 64; i++) await cache.put(`k${i}`, i);
    const victim = nodes[1]!;
    const epoch0 = victim.topology()!.members[victim.id]!.epoch;
    // What the control plane records, in order: the lease's delete must come before the topology
    // that drops the victim.
    const events: string[] = [];
    const stop = [
      kv.watch(LEASE_PREFIX + victim.id, (e: KvEvent<unknown>) => events.push(`lease ${e.type}`)),
      kv.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => {
        if (e.type === 'put' && e.value.members[victim.id]?.epoch !== epoch0) events.push(`dropped ${e.value.version}`);
      }),
    ];
    try {
      const lastRenewal = Date.now();
      // Cut off from its peers, as PeerReach would find it (the control plane still answers).
      const reach = (victim as unknown as { reach: { fenced: () => boolean } }).reach;
      const fencedBefore = reach.fenced.bind(reach);
      let cut = true;
      reach.fenced = () => cut || fencedBefore();
      let failures = 0;
      let writes = 0;
      let stopping = false;
      const load = (async () => {
        for (let n = 0; !stopping; n++) {
          try {
            await cache.put(`k${n % 64}`, n);
            writes++;
          } catch (err) {
            failures++;
            // A closed client rejects at once: looping on would spin without yielding to timers.
            if (err instanceof GridClosedError) return;
          }
        }
      })();
      try {
        await until(() => events.some((e) => e.startsWith('dropped')), 'the victim dropped from the topology', LEASE_MS);
        const droppedAt = Date.now();
        expect(events.indexOf('lease delete')).toBeGreaterThanOrEqual(0);
        expect(events.indexOf('lease delete')).toBeLessThan(events.findIndex((e) => e.startsWith('dropped')));
        // Declared gone well within what its last renewal was good for.
        expect(droppedAt - lastRenewal).toBeLessThan(LEASE_MS);
        // That life serves nothing as primary any more.
        expect(victim.isServing()).toBe(false);
        const before = writes;
        await until(() => writes >= before + 200, 'writes going on without it');
        // The fence ends: it comes back under a new epoch (the topology dropped this one), empty.
        cut = false;
        await until(
          () => nodes.every((n) => Object.keys(n.topology()?.members ?? {}).length === 3) && victim.topology()!.members[victim.id]!.epoch !== epoch0,
          'the victim a member again under a new epoch',
          20_000,
        );
      } finally {
        stopping = true;
        await load;
      }
      expect(failures).toBe(0);
      for (let i = 0; i < 64; i++) expect(await cache.get(`k${i}`)).toBeTypeOf('number');
    } finally {
      for (const s of stop) s();
    }
  }, 60_000);

  it('a life that gave its lease up serves nothing as primary, even before it hears that it was dropped, and even on promises it holds', async () => {
    const inner = new MemoryControlPlane();
    const planes = new Map(['a', 'b', 'c'].map((id) => [id, new FlakyControlPlane(inner)]));
    await startThree(nodes, (id) => planes.get(id)!, { leaseMs: 2000 });
    const victim = nodes[1]!;
    const topo = victim.topology()!;
    let key = '';
    for (let i = 0; key === ''; i++) if (topo.owners[partitionOfBytes(encodeKey(`r${i}`), THREE_PARTITIONS)]![0] === victim.id) key = `r${i}`;
    const inner2 = victim as unknown as { reach: { fenced: () => boolean }; lease: { gaveUp: () => boolean }; promises: { heldCount: number } };
    const raw = await TestConnection.connect(`127.0.0.1:${victim.port}`);
    try {
      await raw.call(Op.CACHE_PUT, { cache: 'raw', key: encodeKey(key), value: new Uint8Array([7]), seq: 1 });
      // It hears of no topology more (it keeps the one naming it primary; it still sees the
      // others renew), and its renewals fail: it asks its backups for promises, and serves on them (ADR 0007).
      const plane = planes.get(victim.id)!;
      plane.stallWatchesFrom((e) => e.key === TOPOLOGY_KEY, TOPOLOGY_KEY);
      plane.failWrites = true;
      await until(() => inner2.promises.heldCount > 0 && !victim.leaseValid(), 'the victim serving on promises');
      expect([...(await raw.call<{ value: Uint8Array }>(Op.CACHE_GET, { cache: 'raw', key: encodeKey(key) })).value]).toEqual([7]);
      // Fenced now: it gives its lease up (the delete fails here, the lease runs out instead).
      inner2.reach.fenced = () => true;
      await until(() => inner2.lease.gaveUp(), 'the lease given up');
      expect(victim.topology()!.owners[partitionOfBytes(encodeKey(key), THREE_PARTITIONS)]![0]).toBe(victim.id);
      expect(inner2.promises.heldCount).toBeGreaterThan(0);
      const answer = await raw.call(Op.CACHE_GET, { cache: 'raw', key: encodeKey(key) }).then(
        (v) => v,
        (err: unknown) => err,
      );
      expect(answer).toBeInstanceOf(GridError);
      expect((answer as GridError).code).toBe(ErrorCode.NOT_READY);
    } finally {
      raw.close();
    }
  }, 30_000);
});
