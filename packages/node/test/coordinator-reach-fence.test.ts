/**
 * ADR 0065 on the coordinator loop (a real MemoryControlPlane, the clock under the test's control,
 * the harness of `coordinator-late-nodes.test.ts`): n2 reports n3 unreachable in its lease while
 * all three renew. A report that lasts less than a lease (what a hung node that resumes can
 * cause: it renews before it answers) fences nobody; a lasting one fences n3 (the higher id),
 * whose later life is then held back while it reports n2 unreachable, and admitted once it no
 * longer does.
 */
import { describe, expect, it } from 'vitest';
import { MemoryControlPlane, type TopologyRecord } from '@gridlink/node';
import { LEASE_PREFIX, TOPOLOGY_KEY } from '../src/control/keys.js';
import { initialTopology, type LeaseRecord } from '../src/control/topology.js';
import { coordinatorOf, fakeDateClock, lease, settle } from './helpers/coordinator.js';

const LEASE = 1000;

describe('coordinator: members that cannot reach each other (ADR 0065)', () => {
  const clock = fakeDateClock();

  /**
   * Runs `totalMs`; every 250 ms each node renews with what `leaseOf(id, elapsed)` returns (null:
   * no renewal). Returns the topology after each tick, with the elapsed time.
   */
  async function run(leaseOf: (id: string, elapsed: number, topo: TopologyRecord) => LeaseRecord | null, totalMs: number): Promise<{ at: number; topo: TopologyRecord }[]> {
    const kv = new MemoryControlPlane();
    for (const id of ['n1', 'n2', 'n3']) await kv.put(LEASE_PREFIX + id, lease(id));
    await kv.create(TOPOLOGY_KEY, initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: ['n1', 'n2', 'n3'].map((id) => lease(id)) }));
    const n1 = coordinatorOf(kv, 'n1');
    clock.closers.push(n1.close);
    await n1.coordinator.load();
    await n1.refreshTopology();
    await settle();
    n1.coordinator.started();
    const start = clock.now;
    const seen: { at: number; topo: TopologyRecord }[] = [];
    for (let t = 0; t < totalMs; t += 10) {
      clock.now += 10;
      clock.apply();
      const elapsed = clock.now - start;
      if (clock.now % 250 === 0) {
        for (const id of ['n1', 'n2', 'n3']) {
          const l = leaseOf(id, elapsed, n1.view.topo!);
          if (l !== null) await kv.put(LEASE_PREFIX + id, l);
        }
      }
      await settle();
      if (clock.now % 50 === 0) await n1.coordinator.tick();
      await settle();
      seen.push({ at: elapsed, topo: n1.view.topo! });
    }
    return seen;
  }

  it('a report shorter than a lease fences nobody', async () => {
    const seen = await run((id, elapsed) => (id === 'n2' && elapsed >= 500 && elapsed < 1250 ? { ...lease(id), unreachable: ['n3'] } : lease(id)), 4000);
    expect(seen.every((s) => s.topo.fenced === undefined && s.topo.version === 1)).toBe(true);
  });

  it('a lasting report fences the higher id; its later life is held back while it reports the other one, then admitted', async () => {
    let n3Fenced = false;
    const seen = await run((id, elapsed, topo) => {
      if (id === 'n2') return elapsed >= 500 && elapsed < 9000 ? { ...lease(id), unreachable: ['n3'] } : lease(id);
      if (id !== 'n3') return lease(id);
      // n3 as a node does: stops renewing once asked; a new life once its old one is dropped.
      if (topo.fenced?.['n3'] === 'n3-1' && topo.members['n3']?.epoch === 'n3-1') n3Fenced = true;
      if (!n3Fenced) return lease(id);
      if (topo.members['n3']?.epoch === 'n3-1') return null;
      return elapsed < 9000 ? { ...lease(id, 'n3-2'), unreachable: ['n2'] } : lease(id, 'n3-2');
    }, 14_000);
    const first = (p: (t: TopologyRecord) => boolean): number => seen.find((s) => p(s.topo))?.at ?? -1;
    const fencedAt = first((t) => t.fenced?.['n3'] === 'n3-1');
    // Reported from the renewal at 500 ms, seen at once; fenced a lease later.
    expect(fencedAt).toBeGreaterThanOrEqual(500 + LEASE);
    expect(fencedAt).toBeLessThanOrEqual(500 + LEASE + 300);
    const droppedAt = first((t) => t.members['n3'] === undefined);
    expect(droppedAt).toBeGreaterThan(fencedAt);
    expect(droppedAt).toBeLessThanOrEqual(fencedAt + LEASE + 400);
    // n2 is never fenced, and n3's later life is not a member while it reports n2 (until 9 s).
    expect(seen.some((s) => s.topo.fenced?.['n2'] !== undefined)).toBe(false);
    expect(seen.filter((s) => s.at > droppedAt && s.at < 9000).every((s) => s.topo.members['n3'] === undefined)).toBe(true);
    const admittedAt = first((t) => t.members['n3']?.epoch === 'n3-2');
    expect(admittedAt).toBeGreaterThanOrEqual(9000);
    expect(admittedAt).toBeLessThanOrEqual(9000 + 600);
    expect(seen.at(-1)!.topo.fenced).toBeUndefined();
    expect(seen.at(-1)!.topo.lost).toEqual([]);
  });

  it('a fence whose reporters stop reporting before the node is gone is withdrawn: the node keeps its epoch', async () => {
    let fencedSeenAt = -1;
    const seen = await run((id, elapsed, topo) => {
      const fenced = topo.fenced?.['n3'] === 'n3-1';
      if (fenced && fencedSeenAt < 0) fencedSeenAt = elapsed;
        // n2 reports n3 until 250 ms after the fence (the cut heals then).
      if (id === 'n2') return elapsed >= 500 && (fencedSeenAt < 0 || elapsed < fencedSeenAt + 250) ? { ...lease(id), unreachable: ['n3'] } : lease(id);
      // n3 renews nothing while asked not to; its last report named n2 (its probes failed too),
      // and it takes a renewal or two after the heal for its probes to clear it.
      if (id === 'n3' && fenced) return null;
      if (id === 'n3') return elapsed >= 500 && (fencedSeenAt < 0 || elapsed < fencedSeenAt + 750) ? { ...lease(id), unreachable: ['n2'] } : lease(id);
      return lease(id);
    }, 6000);
    expect(fencedSeenAt).toBeGreaterThan(0);
    const withdrawn = seen.find((s) => s.at > fencedSeenAt && s.topo.fenced === undefined);
    expect(withdrawn).toBeDefined();
    expect(seen.every((s) => s.topo.members['n3']?.epoch === 'n3-1')).toBe(true);
    // Not fenced again on its own report, stale while it renewed nothing.
    expect(seen.filter((s) => s.at > withdrawn!.at && s.topo.fenced !== undefined)).toEqual([]);
  });
});
