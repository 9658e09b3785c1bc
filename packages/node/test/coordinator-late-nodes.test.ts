/**
 * ADR 0062: a node whose lease renewals are late but who answers the coordinator over the grid
 * (its nats-server was killed or hung and it is reconnecting) stays a member for up to two leases
 * past its lease; one that answers nothing (dead, hung, cut off from its peers too) is dropped
 * exactly when it was before. Driven on a real MemoryControlPlane with the clock under the test's
 * control, through the same harness as `coordinator-leases.test.ts`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryControlPlane, type TopologyRecord } from '@gridlink/node';
import { LEASE_PREFIX, TOPOLOGY_KEY } from '../src/control/keys.js';
import { initialTopology } from '../src/control/topology.js';
import { LateNodes } from '../src/membership/liveness.js';
import { coordinatorOf, fakeDateClock, lease, settle } from './helpers/coordinator.js';

const LEASE = 1000;
const GRACE = 2 * LEASE;
const TICK = 50;

/**
 * How n2 answers n1's probe ("are you alive?", sent every renewal interval: ADR 0063) at `elapsed`
 * ms into the run (null: no answer; the request fails).
 */
type Answering = (elapsed: number) => 'yes' | 'other-epoch' | 'old-version' | null;

describe('coordinator: late nodes that answer over the grid (ADR 0062)', () => {
  const clock = fakeDateClock();
  const closers = clock.closers;

  /**
   * Three nodes, n1 coordinating; n1 and n3 renew throughout, n2 until `n2StopsAt` ms into the run
   * and again from `n2ResumesAt`. Returns when n2 left the topology (ms after its last renewal
   * written, or null) and how many topology versions were written.
   */
  async function scenario(
    answering: Answering | undefined,
    n2StopsAt: number,
    n2ResumesAt: number,
    totalMs: number,
    n3DiesAt = Infinity,
  ): Promise<{ droppedAfter: number | null; versions: number; topo: TopologyRecord }> {
    // Every scenario on the same clock phase: renewals every 250 ms, ticks every 50 ms.
    clock.now = 1_000_000;
    clock.apply();
    const kv = new MemoryControlPlane();
    let versions = 0;
    closers.push(
      kv.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => {
        if (e.type === 'put') versions++;
      }),
    );
    for (const id of ['n1', 'n2', 'n3']) await kv.put(LEASE_PREFIX + id, lease(id));
    await kv.create(TOPOLOGY_KEY, initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: ['n1', 'n2', 'n3'].map((id) => lease(id)) }));
    const n1 = coordinatorOf(kv, 'n1');
    closers.push(n1.close);
    await n1.coordinator.load();
    await n1.refreshTopology();
    await settle();
    n1.coordinator.started();
    const start = clock.now;
    let lastN2 = clock.now;
    let droppedAfter: number | null = null;
    for (let t = 0; t < totalMs; t += 10) {
      clock.now += 10;
      clock.apply();
      const elapsed = clock.now - start;
      if (clock.now % 250 === 0) {
        await kv.put(LEASE_PREFIX + 'n1', lease('n1'));
        if (elapsed < n3DiesAt) await kv.put(LEASE_PREFIX + 'n3', lease('n3'));
        if (elapsed < n2StopsAt || elapsed >= n2ResumesAt) {
          await kv.put(LEASE_PREFIX + 'n2', lease('n2'));
          lastN2 = clock.now;
        }
        // n1's probe of n2 (what PeerReach hands the coordinator), answered at once or failed.
        const a = answering?.(elapsed);
        if (a !== undefined) {
          const version = n1.view.topo!.version;
          n1.coordinator.late.answered(
            'n2',
            clock.now,
            a === null ? null : a === 'other-epoch' ? { epoch: 'n2-2', version } : a === 'old-version' ? { epoch: 'n2-1', version: version - 1 } : { epoch: 'n2-1', version },
          );
        }
      }
      await settle();
      if (clock.now % TICK === 0) await n1.coordinator.tick();
      await settle();
      if (droppedAfter === null && n1.view.topo!.members['n2'] === undefined) droppedAfter = clock.now - lastN2;
    }
    return { droppedAfter, versions, topo: n1.view.topo! };
  }

  it('a node that answers is kept up to two leases past its lease, then dropped', async () => {
    const r = await scenario(() => 'yes', 500, Infinity, 5000);
    expect(r.droppedAfter).not.toBeNull();
    expect(r.droppedAfter!).toBeGreaterThan(LEASE + GRACE - 2 * TICK);
    expect(r.droppedAfter!).toBeLessThanOrEqual(LEASE + GRACE + 2 * TICK);
  });

  it('a node whose renewals come back within the grace stays a member, and no topology is written', async () => {
    const r = await scenario(() => 'yes', 500, 500 + 2500, 6000);
    expect(r.droppedAfter).toBeNull();
    expect(r.versions).toBe(1);
  });

  it('past the grace, a node that answers and holds the only copy of partitions (their other owner died) is kept, and nothing is lost', async () => {
    // n2 cannot renew from 500 ms and answers throughout; n3 dies at 1,000 ms; n2 renews again at 6,000 ms.
    const r = await scenario(() => 'yes', 500, 6000, 8000, 1000);
    expect(r.droppedAfter).toBeNull();
    expect(r.topo.members['n3']).toBeUndefined();
    expect(r.topo.lost).toEqual([]);
    // Without asking, n2 is dropped a lease after its last renewal and the partitions only it
    // and n3 held are lost.
    const without = await scenario(undefined, 500, 6000, 8000, 1000);
    expect(without.droppedAfter).not.toBeNull();
    expect(without.topo.lost.length).toBeGreaterThan(0);
  });

  it('the lowest id late: the next node takes over coordinating and keeps it at its first tick, on the answers its probes got (ADR 0063 probes)', async () => {
    // n1 coordinates until its lease is gone; n2 then coordinates and must not drop n1 while n1
    // answers: it knows only what its probes heard before it coordinated.
    const run = async (fed: boolean): Promise<boolean> => {
      clock.now = 1_000_000;
      clock.apply();
      const kv = new MemoryControlPlane();
      for (const id of ['n1', 'n2', 'n3']) await kv.put(LEASE_PREFIX + id, lease(id));
      await kv.create(TOPOLOGY_KEY, initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: ['n1', 'n2', 'n3'].map((id) => lease(id)) }));
      const n2 = coordinatorOf(kv, 'n2');
      closers.push(n2.close);
      await n2.coordinator.load();
      await n2.refreshTopology();
      await settle();
      n2.coordinator.started();
      let dropped = false;
      for (let t = 0; t < 3000; t += 10) {
        clock.now += 10;
        clock.apply();
        if (clock.now % 250 === 0) {
          for (const id of ['n2', 'n3']) await kv.put(LEASE_PREFIX + id, lease(id));
          if (t < 200) await kv.put(LEASE_PREFIX + 'n1', lease('n1'));
          if (fed) n2.coordinator.late.answered('n1', clock.now, { epoch: 'n1-1', version: n2.view.topo!.version });
        }
        await settle();
        if (clock.now % TICK === 0) await n2.coordinator.tick();
        await settle();
        if (n2.view.topo!.members['n1'] === undefined) dropped = true;
      }
      return dropped;
    };
    expect(await run(false)).toBe(true);
    expect(await run(true)).toBe(false);
  });

  it('a node that answers nothing is dropped exactly as without asking', async () => {
    const without = await scenario(undefined, 500, Infinity, 3000);
    const silent = await scenario(() => null, 500, Infinity, 3000);
    expect(without.droppedAfter).not.toBeNull();
    expect(silent.droppedAfter).toBe(without.droppedAfter);
    expect(silent.droppedAfter!).toBeLessThanOrEqual(LEASE + 2 * TICK);
  });

  it('an answer from another epoch, or from a node behind on the topology, keeps nobody', async () => {
    const without = await scenario(undefined, 500, Infinity, 3000);
    expect((await scenario(() => 'other-epoch', 500, Infinity, 3000)).droppedAfter).toBe(without.droppedAfter);
    expect((await scenario(() => 'old-version', 500, Infinity, 3000)).droppedAfter).toBe(without.droppedAfter);
  });

  it('a node that stops answering (it died while reconnecting) is dropped within half a lease of its last answer', async () => {
    // It answers until 1,800 ms after it stopped renewing at 500 ms.
    const r = await scenario((elapsed) => (elapsed < 500 + 1800 ? 'yes' : null), 500, Infinity, 5000);
    expect(r.droppedAfter).not.toBeNull();
    expect(r.droppedAfter!).toBeLessThan(LEASE + GRACE - 2 * TICK);
  });

  it('property: never dropped while renewing, never before its lease, never after the grace; silent nodes exactly as before', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 300, max: 1000 }),
        fc.integer({ min: 100, max: 4000 }),
        fc.integer({ min: 0, max: 4000 }),
        fc.constantFrom<'yes' | 'other-epoch' | 'old-version' | null>('yes', 'other-epoch', 'old-version', null),
        async (stopAt, gap, answersFor, kind) => {
          // Answers as `kind` until `answersFor` ms after it stopped renewing, then nothing.
          const answering: Answering = (elapsed) => (elapsed < stopAt + answersFor ? kind : null);
          const r = await scenario(answering, stopAt, stopAt + gap, stopAt + gap + 1500);
          const silent = await scenario(undefined, stopAt, stopAt + gap, stopAt + gap + 1500);
          if (silent.droppedAfter !== null) expect(silent.droppedAfter).toBeLessThanOrEqual(LEASE + 2 * TICK);
          if (r.droppedAfter !== null) {
            // Never before the lease ran out, never past the grace.
            expect(r.droppedAfter).toBeGreaterThan(LEASE - TICK);
            expect(r.droppedAfter).toBeLessThanOrEqual(LEASE + GRACE + 2 * TICK);
          }
          // Whoever was dropped without asking is dropped with asking unless it answered as itself.
          if (kind !== 'yes' || answersFor === 0) expect(r.droppedAfter).toBe(silent.droppedAfter);
          // A node dropped without asking is kept (or dropped later) when it answered; one kept
          // without asking is kept with it.
          // A node answering as itself all along is kept through the grace: a gap shorter than
          // that costs it nothing. The gap that counts is between the renewals written (every
          // 250 ms): a renewal landing exactly as the grace ends may come first or not.
          if (kind === 'yes' && answersFor >= LEASE + GRACE) {
            const renewedLast = Math.floor((stopAt - 1) / 250) * 250;
            const renewedAgain = Math.ceil((stopAt + gap) / 250) * 250;
            const written = renewedAgain - renewedLast;
            if (written < LEASE + GRACE - 2 * TICK) expect(r.droppedAfter).toBeNull();
            else if (written > LEASE + GRACE + 2 * TICK) expect(r.droppedAfter).not.toBeNull();
            if (r.droppedAfter !== null) expect(r.droppedAfter).toBeGreaterThan(LEASE + GRACE - 2 * TICK);
          }
          if (silent.droppedAfter === null) expect(r.droppedAfter).toBeNull();
          else if (r.droppedAfter !== null) expect(r.droppedAfter).toBeGreaterThanOrEqual(silent.droppedAfter);
        },
      ),
      { numRuns: 40 },
    );
    for (const c of closers.splice(0)) c();
  }, 120_000);
});

describe('LateNodes', () => {
  it('property: an answer counts only from the same epoch, at the topology asked, fresh, within the grace', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5000 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.boolean(),
        fc.integer({ min: -2, max: 2 }),
        (sentAgo, age, sameEpoch, versionDelta) => {
          const late = new LateNodes(1000, 500, 2000);
          const at = 100_000;
          late.answered('n', at - sentAgo, { epoch: sameEpoch ? 'e1' : 'e2', version: 10 + versionDelta });
          const kept = late.vouched('n', 'e1', age, 10, at);
          expect(kept).toBe(sameEpoch && versionDelta >= 0 && sentAgo <= 500 && age <= 3000);
        },
      ),
    );
  });

  it('the newest answer counts, for freshMs from when its request was sent', () => {
    const late = new LateNodes(1000, 500, 2000);
    late.answered('n', 0, null);
    expect(late.answering('n', 'e1', 100)).toBe(false);
    late.answered('n', 90, { epoch: 'e1', version: 3 });
    expect(late.answering('n', 'e1', 590)).toBe(true);
    expect(late.answering('n', 'e1', 591)).toBe(false);
    expect(late.answering('n', 'e2', 100)).toBe(false);
    expect(late.vouched('n', 'e1', 3001, 3, 100)).toBe(false);
    // An answer without a topology version (a release before ADR 0062) keeps nobody.
    // An answer to an older request arriving late replaces nothing newer.
    late.answered('n', 50, { epoch: 'e2', version: 4 });
    expect(late.answering('n', 'e1', 590)).toBe(true);
    const older = new LateNodes(1000, 500, 2000);
    older.answered('n', 100, { epoch: 'e1' });
    expect(older.answering('n', 'e1', 150)).toBe(false);
    expect(older.vouched('n', 'e1', 1200, 0, 150)).toBe(false);
  });

  it('property: newestVersion is the newest topology among the fresh answers (ADR 0071 amendment)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 20 })), { maxLength: 5 }), (answers) => {
        const late = new LateNodes(1000, 500, 2000);
        const at = 100_000;
        answers.forEach(([sentAgo, v], i) => late.answered(`n${i}`, at - sentAgo, { epoch: 'e', version: v }));
        expect(late.newestVersion(at)).toBe(Math.max(-1, ...answers.filter(([sentAgo]) => sentAgo <= 500).map(([, v]) => v)));
      }),
    );
  });
});
