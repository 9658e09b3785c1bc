/**
 * A node that rejoins (or joins) takes its primaryships only once it is caught up on every
 * partition, all in one topology step (ADR 0037): the coordinator's `deferHandBack` on top of
 * `nextTopology`, as a property of random membership histories, and on an embedded cluster under
 * load (every topology version the restarted node goes through is recorded).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bytesSerializer, type GridClient } from '@gridlink/client';
import type { LeaseRecord, TopologyRecord } from '@gridlink/node';
import { TOPOLOGY_KEY, coordinatorStep, deferHandBack, initialTopology, isBalanced, nextTopology } from '@gridlink/node/internal';
import { WriteStream } from './helpers/workload.js';
import { perTestCluster } from './helpers/grid.js';

const IDS = ['n1', 'n2', 'n3', 'n4'];
const P = 16;

type Event =
  | { t: 'die'; id: string }
  | { t: 'join'; id: string }
  | { t: 'leave'; id: string }
  | { t: 'sync'; id: string; p: number }
  | { t: 'syncAll'; id: string }
  | { t: 'step' };

// Pulls complete one partition at a time, between steps, as they do on a node.
const event: fc.Arbitrary<Event> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('die' as const), id: fc.constantFrom(...IDS) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('join' as const), id: fc.constantFrom(...IDS) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('leave' as const), id: fc.constantFrom(...IDS) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('sync' as const), id: fc.constantFrom(...IDS), p: fc.integer({ min: 0, max: P - 1 }) }), weight: 6 },
  { arbitrary: fc.record({ t: fc.constant('syncAll' as const), id: fc.constantFrom(...IDS) }), weight: 1 },
  { arbitrary: fc.constant({ t: 'step' as const }), weight: 5 },
);

const lease = (id: string, epoch: string): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced: {} });

const syncingIds = (rec: TopologyRecord): Set<string> => new Set(rec.syncing.flatMap((s) => s.map((e) => e.id)));

describe('deferHandBack (the coordinator step of a planned primary change)', () => {
  it('a restarted node that finished one pull stays backup of it until it finished them all, then takes all at once', () => {
    const leases = ['n1', 'n2', 'n3'].map((id) => lease(id, `${id}-a`));
    let rec = initialTopology({ clusterId: 'c', partitions: P, backups: 1, leases });
    const coordinator = (alive: LeaseRecord[]): TopologyRecord | null => coordinatorStep(rec, alive, 0);
    const mineBefore = rec.owners.flatMap((o, p) => (o[0] === 'n2' ? [p] : []));
    expect(mineBefore.length).toBeGreaterThan(1);
    // n2 restarts (new epoch, empty): after a step it pulls every partition it is assigned.
    const back = lease('n2', 'n2-b');
    const alive = [leases[0]!, back, leases[2]!];
    rec = coordinator(alive)!;
    const pulls = rec.syncing.flatMap((s, p) => (s.some((e) => e.id === 'n2') ? [p] : []));
    expect(pulls.length).toBeGreaterThan(mineBefore.length);
    // One pull done: n2 becomes an owner of it, but not its primary.
    back.synced[String(mineBefore[0]!)] = rec.version;
    rec = coordinator(alive)!;
    expect(rec.owners[mineBefore[0]!]).toContain('n2');
    expect(rec.owners.filter((o) => o[0] === 'n2')).toEqual([]);
    // Nothing else changed: the next step writes nothing.
    expect(coordinator(alive)).toBeNull();
    // Every pull done: one step makes it primary of all it was primary of before.
    for (const p of pulls) back.synced[String(p)] = rec.version;
    rec = coordinator(alive)!;
    expect(rec.owners.flatMap((o, p) => (o[0] === 'n2' ? [p] : []))).toEqual(mineBefore);
    expect(isBalanced(rec)).toBe(true);
  });

  it('keeps the previous primary until the new one syncs nothing; only reorders or keeps a caught-up holder; ends balanced', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 }), fc.array(event, { maxLength: 80 }), (backups, events) => {
        let epochN = 0;
        const alive = new Map<string, LeaseRecord>();
        for (const id of IDS.slice(0, 3)) alive.set(id, lease(id, `e${epochN++}`));
        let rec: TopologyRecord = initialTopology({ clusterId: 'c', partitions: P, backups, leases: [...alive.values()] });
        // Who holds an up-to-date copy of each partition: "id/epoch".
        const holders: Set<string>[] = rec.owners.map((o) => new Set(o.map((id) => `${id}/${alive.get(id)!.epoch}`)));
        let now = 0;

        /** One coordinator step; false when it wrote nothing. */
        const step = (): boolean => {
          now += 10;
          const stepped = nextTopology(rec, [...alive.values()], now);
          if (stepped === null) return false;
          const leaving = new Set([...alive.values()].filter((l) => l.leaving === true).map((l) => l.id));
          const next = deferHandBack(rec, stepped, leaving);
          expect(next.members).toEqual(stepped.members);
          expect(next.syncing).toEqual(stepped.syncing);
          expect(next.lost).toEqual(stepped.lost);
          const busy = syncingIds(next);
          for (let p = 0; p < P; p++) {
            const o = next.owners[p]!;
            const was = rec.owners[p]![0];
            expect(new Set(o).size).toBe(o.length);
            for (const id of o) {
              // Every owner is one the step chose, or the previous primary kept (a member under
              // the same epoch, not leaving, and holding the data).
              if (!stepped.owners[p]!.includes(id)) {
                expect(id).toBe(was);
                expect(leaving.has(id)).toBe(false);
              }
              expect(holders[p]!.has(`${id}/${next.members[id]!.epoch}`)).toBe(true);
            }
            expect(stepped.owners[p]!.every((id) => o.includes(id))).toBe(true);
            // A change of primary towards a node still pulling something happens only when the
            // previous primary cannot keep serving (gone, restarted or leaving).
            const now0 = o[0];
            if (now0 !== undefined && was !== undefined && now0 !== was && busy.has(now0)) {
              const kept = rec.members[was]?.epoch === next.members[was]?.epoch && next.members[was] !== undefined && !leaving.has(was);
              expect(kept).toBe(false);
            }
          }
          const written = coordinatorStep(rec, [...alive.values()], now);
          expect(written === null ? null : written.owners).toEqual(JSON.stringify({ ...next, version: 0 }) === JSON.stringify({ ...rec, version: 0 }) ? null : next.owners);
          if (written === null) return false;
          rec = written;
          return true;
        };

        const syncPartition = (l: LeaseRecord, p: number): void => {
          // A pull copies from the primary: only possible while one is alive.
          if (rec.syncing[p]!.some((s) => s.id === l.id) && rec.owners[p]!.length > 0) {
            l.synced[String(p)] = rec.version;
            holders[p]!.add(`${l.id}/${l.epoch}`);
          }
        };

        for (const e of events) {
          if (e.t === 'die') alive.delete(e.id);
          else if (e.t === 'join') alive.set(e.id, lease(e.id, `e${epochN++}`));
          else if (e.t === 'leave') {
            const l = alive.get(e.id);
            if (l) l.leaving = true;
          } else if (e.t === 'sync' || e.t === 'syncAll') {
            const l = alive.get(e.id);
            if (l && rec.members[e.id]?.epoch === l.epoch) {
              if (e.t === 'sync') syncPartition(l, e.p);
              else for (let p = 0; p < P; p++) syncPartition(l, p);
            }
          } else step();
        }
        // Then nobody leaves or dies any more and every pull completes: the steps converge on
        // the balanced record (deferring never blocks the handover for good).
        for (const l of alive.values()) delete l.leaving;
        for (let i = 0; i < 40; i++) {
          for (const l of alive.values()) if (rec.members[l.id]?.epoch === l.epoch) for (let p = 0; p < P; p++) syncPartition(l, p);
          if (!step()) break;
        }
        if (rec.lost.length === 0 && Object.keys(rec.members).length > 0) expect(isBalanced(rec)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('a node rejoining an embedded cluster under load', () => {
  const fx = perTestCluster();

  it('is primary of nothing while it pulls; takes every primaryship back in one step; no failed write', async () => {
    // Small frames: each partition's snapshot travels in several parts, so the pulls of a
    // rejoining node span many lease renewals (and, without ADR 0037, many topology steps).
    const c = await fx.start({ nodes: 3, partitions: 32, backups: 1, maxFrameSize: 64 * 1024, autoAdjust: { enabled: false } });
    const client: GridClient = await fx.connectFast(c.endpoints, { requestTimeout: 1000, operationTimeout: 20_000 });
    const cache = client.cache<string, Uint8Array>('back', { serializer: bytesSerializer });
    // About 128 KiB per partition: four parts per pull.
    const filler = new Uint8Array(8192).fill(7);
    for (let i = 0; i < 512; i += 64) await Promise.all(Array.from({ length: 64 }, (_, j) => cache.put(`fill-${i + j}`, filler)));
    const keys = Array.from({ length: 16 }, (_, i) => `k-${i}`);
    const stream = new WriteStream(cache, keys);
    const seen: TopologyRecord[] = [];
    const unwatch = c.controlPlane.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => {
      if (e.type === 'put') seen.push(e.value);
    });
    // Retries of the client's operations (attempt 1 = the first retry of an operation).
    const retries: { attempt: number; code: string }[] = [];
    client.on('retry', (e: { attempt: number; error: { code: string } }) => retries.push({ attempt: e.attempt, code: e.error.code }));
    try {
      await stream.waitForAcks(keys, 0, 32);
      const id = c.nodeIds[1]!;
      const primariesBefore = c.node(id).partitionCounts().primary;
      expect(primariesBefore).toBeGreaterThan(0);
      await c.node(id).stop();
      await c.waitForTopology((t) => t.members[id] === undefined);
      const restartedAt = seen.length;
      retries.length = 0;
      await c.restart(id);
      await c.waitForStable(20_000);
      await stream.waitForAcks(keys, Date.now(), 16);

      const epoch = c.topology().members[id]!.epoch;
      const mine = seen.slice(restartedAt).filter((t) => t.members[id]?.epoch === epoch);
      expect(mine.some((t) => t.syncing.some((s) => s.some((e) => e.id === id)))).toBe(true);
      const primaryCount = (t: TopologyRecord): number => t.owners.filter((o) => o[0] === id).length;
      let gains = 0;
      let prev = 0;
      for (const t of mine) {
        const pulling = t.syncing.some((s) => s.some((e) => e.id === id));
        // The old primaries serve until the rejoined node has pulled everything.
        if (pulling) expect(primaryCount(t)).toBe(0);
        if (primaryCount(t) > prev) gains++;
        prev = primaryCount(t);
      }
      // ... and then hand over to it in one step.
      expect(gains).toBe(1);
      expect(prev).toBe(primariesBefore);
      // A write caught in flight by the switch is refused once (NOT_PRIMARY) and retried at
      // once; no operation needs a second retry while the node comes back.
      expect(retries.filter((r) => r.attempt > 1)).toEqual([]);
    } finally {
      unwatch();
      await stream.stop();
    }
    expect(stream.failures).toEqual([]);
    await stream.verify(cache);
  }, 60_000);
});
