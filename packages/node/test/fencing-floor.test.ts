/**
 * ADR 0049: fencing tokens are a partition's update counter, so a partition whose every holder
 * died and that is served again empty (the loss accepted, or fresh owners for IGNORE caches) must
 * start its counter above every counter of the lost copies, or tokens go back and a downstream
 * system that checks them refuses the new holder while a stale one's writes still pass.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { partitionOf } from '@gridlink/affinity';
import { PartitionLostError } from '@gridlink/client';
import { withLossAccepted, type TopologyRecord } from '@gridlink/node';
import { nextFloor } from '../src/control/topology.js';
import { topologyProblem } from '../src/control/records.js';
import { perTestCluster } from './helpers/grid.js';

const P = 16;

describe('counter floors (pure)', () => {
  it('a floor is above the previous one by 2^32 and above the clock times 1024, and stays a safe integer for centuries', () => {
    fc.assert(
      fc.property(fc.option(fc.nat({ max: 2 ** 52 })), fc.integer({ min: 0, max: Date.UTC(2200, 0, 1) }), (prev, now) => {
        const f = nextFloor(prev ?? undefined, now);
        expect(Number.isSafeInteger(f)).toBe(true);
        expect(f).toBeGreaterThanOrEqual(now * 1024);
        expect(f).toBeGreaterThanOrEqual((prev ?? 0) + 2 ** 32);
      }),
    );
  });

  it('accepting a loss floors exactly the lost partitions nobody holds, above their previous floor, and the record stays readable', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.nat({ max: P - 1 }), { maxLength: P }),
        fc.uniqueArray(fc.nat({ max: P - 1 }), { maxLength: 4 }),
        fc.dictionary(fc.nat({ max: P - 1 }).map(String), fc.nat({ max: 2 ** 50 })),
        fc.option(fc.uniqueArray(fc.nat({ max: P - 1 }), { maxLength: P })),
        (lost, held, prevFloors, which) => {
          const rec = {
            clusterId: 'c', version: 3, partitions: P, backups: 1, baseline: [], members: {}, addresses: {},
            owners: Array.from({ length: P }, (_, p) => (held.includes(p) ? ['a'] : [])),
            syncing: Array.from({ length: P }, () => []),
            lost,
            autoAdjust: { enabled: true, softTimeoutMs: 1, hardTimeoutMs: 2 },
            adjust: null,
          } as TopologyRecord;
          if (Object.keys(prevFloors).length > 0) rec.floors = prevFloors;
          const now = Date.now();
          const next = withLossAccepted(rec, which ?? undefined, now);
          expect(topologyProblem(JSON.parse(JSON.stringify(next)), P)).toBeNull();
          for (let p = 0; p < P; p++) {
            const before = prevFloors[String(p)];
            const after = next.floors?.[String(p)];
            const accepted = lost.includes(p) && (which === null || which.includes(p));
            if (accepted && !held.includes(p)) expect(after).toBe(nextFloor(before, now));
            else expect(after).toBe(before);
          }
        },
      ),
    );
  });
});

describe('fencing tokens across a lost partition (LocalCluster)', () => {
  const fx = perTestCluster();

  it('every holder of a lock\u2019s partition killed, the loss accepted: the next token is larger than every token before', async () => {
    // Auto-adjust on, quickly: the survivor becomes the baseline and so the owner of what is reset.
    const c = await fx.start({ nodes: 3, partitions: P, backups: 1, autoAdjust: { enabled: true, softTimeoutMs: 100, hardTimeoutMs: 500 } });
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 5000, heartbeatInterval: 100, heartbeatTimeout: 600 });
    const name = 'orders-lock';
    const p = partitionOf(name, P);
    let last = 0;
    for (let i = 0; i < 5; i++) {
      const h = await client.lock(name).acquire({ leaseMs: 5000 });
      expect(h.fencingToken).toBeGreaterThan(last);
      last = h.fencingToken;
      await h.release();
    }
    const holders = [...c.topology().owners[p]!];
    expect(holders).toHaveLength(2);
    for (const id of holders) await c.kill(id);
    await c.waitForTopology((t) => t.lost.includes(p));
    await expect(client.lock(name).tryAcquire({ leaseMs: 5000 })).rejects.toBeInstanceOf(PartitionLostError);
    await c.resetLostPartitions();
    await c.waitForTopology((t) => t.lost.length === 0 && (t.owners[p]?.length ?? 0) > 0);
    const after = await client.lock(name).acquire({ leaseMs: 5000 });
    // Before: 1, below the 5 tokens handed out before the loss.
    expect(after.fencingToken).toBeGreaterThan(last);
    expect(await client.lock(name).tryAcquire({ leaseMs: 5000 })).toBeNull(); // held: the lock works as before
    await after.release();
    const next = await client.lock(name).acquire({ leaseMs: 5000 });
    expect(next.fencingToken).toBeGreaterThan(after.fencingToken);
    await next.release();
  }, 60_000);
});
