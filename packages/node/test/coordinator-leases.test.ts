/**
 * The coordinator loop (`Coordinator`: lease observations, liveness clock, `coordinatorStep`,
 * compare-and-set) on a real MemoryControlPlane with the clock under the test's control: ticks
 * and renewals are driven by hand, so "a lease later" takes no time.
 *
 * - A revision of a lease seen again (a resumed watch, the listing at start overlapping the
 *   watch) is no renewal: a dead node is dropped a lease after its last *new* revision.
 * - After the drop, nothing the coordinator does brings the killed node back (ADR 0039): a tick
 *   gap (the process stalled), its own renewals seen late (every lease counted afresh), or a
 *   coordinator that starts afresh and seeds its observations from the listed leases.
 * - While the auto-adjust the drop started is pending, renewals cost no step (each walks every
 *   partition); the baseline still moves at the first tick after the soft timeout.
 */
import { describe, expect, it } from 'vitest';
import { MemoryControlPlane, type TopologyRecord } from '@gridlink/node';
import { LEASE_PREFIX, TOPOLOGY_KEY } from '../src/control/keys.js';
import { initialTopology } from '../src/control/topology.js';
import type { Coordinator } from '../src/membership/coordinator.js';
import { coordinatorOf, fakeDateClock, lease, settle } from './helpers/coordinator.js';

describe('coordinator lease observations', () => {
  const clock = fakeDateClock();
  const closers = clock.closers;

  /** Advances the clock by `ms` in 10 ms steps: `renewing` renew every 250 ms, ticks every 50 ms. */
  async function run(kv: MemoryControlPlane, c: Coordinator, ms: number, renewing: string[], onStep?: () => void): Promise<void> {
    for (let t = 0; t < ms; t += 10) {
      clock.now += 10;
      clock.apply();
      if (clock.now % 250 === 0) for (const id of renewing) await kv.put(LEASE_PREFIX + id, lease(id));
      await settle();
      if (clock.now % 50 === 0) await c.tick();
      await settle();
      onStep?.();
    }
  }

  async function cluster(): Promise<{ kv: MemoryControlPlane; n1: ReturnType<typeof coordinatorOf>; versions: TopologyRecord[]; writtenAt: number[] }> {
    const kv = new MemoryControlPlane();
    const versions: TopologyRecord[] = [];
    const writtenAt: number[] = [];
    closers.push(
      kv.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => {
        if (e.type !== 'put') return;
        versions.push(e.value);
        writtenAt.push(Date.now());
      }),
    );
    for (const id of ['n1', 'n2', 'n3']) await kv.put(LEASE_PREFIX + id, lease(id));
    await kv.create(TOPOLOGY_KEY, initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: ['n1', 'n2', 'n3'].map((id) => lease(id)) }));
    const n1 = coordinatorOf(kv, 'n1');
    closers.push(n1.close);
    await n1.coordinator.load();
    await settle();
    n1.coordinator.started();
    await run(kv, n1.coordinator, 500, ['n1', 'n2', 'n3']);
    return { kv, n1, versions, writtenAt };
  }

  it('a lease revision seen again is no renewal', async () => {
    const { kv, n1 } = await cluster();
    const lastOfN2 = n1.leaseEvents.filter((e) => e.key === LEASE_PREFIX + 'n2').at(-1)!;
    const diedAt = clock.now;
    // n2 dies; 800 ms later its last revision is delivered once more.
    await run(kv, n1.coordinator, 800, ['n1', 'n3']);
    n1.coordinator.onLeaseEvent(lastOfN2);
    let droppedAt: number | undefined;
    await run(kv, n1.coordinator, 1200, ['n1', 'n3'], () => {
      if (droppedAt === undefined && n1.view.topo?.members['n2'] === undefined) droppedAt = clock.now;
    });
    expect(droppedAt).toBeDefined();
    // A lease after the death (n2 renewed at most a renewal interval before), plus a tick or two.
    expect(droppedAt! - diedAt).toBeLessThanOrEqual(1000 + 100);
  });

  it('a dropped node stays out through a stall, late own renewals and a coordinator started afresh', async () => {
    const { kv, n1, versions } = await cluster();
    await run(kv, n1.coordinator, 1500, ['n1', 'n3']);
    expect(n1.view.topo!.members['n2']).toBeUndefined();
    const droppedAt = versions.length;
    // The process stalls for 700 ms: no tick, no renewal (its own lease's renewal is seen late).
    clock.now += 700;
    clock.apply();
    await run(kv, n1.coordinator, 1000, ['n1', 'n3']);
    // Renewals stall for 400 ms while the ticks go on: its own renewal is seen after a gap.
    await run(kv, n1.coordinator, 400, []);
    await run(kv, n1.coordinator, 600, ['n1', 'n3']);
    // A coordinator started afresh (n1 restarted): it seeds every listed lease as just seen.
    n1.close();
    const again = coordinatorOf(kv, 'n1');
    closers.push(again.close);
    await again.coordinator.load();
    const e = await kv.get<TopologyRecord>(TOPOLOGY_KEY);
    again.view.topoRevision = e!.revision;
    again.view.set(e!.value);
    again.coordinator.started();
    await run(kv, again.coordinator, 600, ['n1', 'n3']);
    const after = versions.slice(droppedAt);
    expect(after.filter((t) => t.members['n2'] !== undefined).map((t) => t.version)).toEqual([]);
    expect(kv.peek<TopologyRecord>(TOPOLOGY_KEY)!.value.members['n3']).toBeDefined();
    // A restart of n2 (a new epoch) joins at once.
    await kv.put(LEASE_PREFIX + 'n2', lease('n2', 'n2-2'));
    await run(kv, again.coordinator, 100, ['n1', 'n3']);
    expect(kv.peek<TopologyRecord>(TOPOLOGY_KEY)!.value.members['n2']?.epoch).toBe('n2-2');
  });

  it('a late renewal of a dropped epoch (applied when a hung NATS server resumed) does not evict the node\'s new life', async () => {
    const { kv, n1 } = await cluster();
    await run(kv, n1.coordinator, 1500, ['n1', 'n3']);
    expect(n1.view.topo!.members['n2']).toBeUndefined();
    // n2 restarts under a new epoch and joins.
    await kv.put(LEASE_PREFIX + 'n2', lease('n2', 'n2-2'));
    await run(kv, n1.coordinator, 100, ['n1', 'n3']);
    expect(n1.view.topo!.members['n2']?.epoch).toBe('n2-2');
    // A renewal its old life sent to a server that hung lands clock.now, after the new life's (a newer
    // revision): that life is over (ADR 0039), it replaces nothing.
    await kv.put(LEASE_PREFIX + 'n2', lease('n2'));
    await run(kv, n1.coordinator, 200, ['n1', 'n3']);
    expect(n1.view.topo!.members['n2']?.epoch).toBe('n2-2');
    // The new life's renewals go on counting: it stays.
    for (let i = 0; i < 6; i++) {
      await kv.put(LEASE_PREFIX + 'n2', lease('n2', 'n2-2'));
      await run(kv, n1.coordinator, 250, ['n1', 'n3']);
    }
    expect(n1.view.topo!.members['n2']?.epoch).toBe('n2-2');
  });

  it('a pending auto-adjust costs no step per tick, and the baseline moves at the first tick after the soft timeout', async () => {
    const { kv, n1, versions, writtenAt } = await cluster();
    await run(kv, n1.coordinator, 1500, ['n1', 'n2']);
    const dropped = versions.findIndex((t) => t.members['n3'] === undefined);
    expect(dropped).toBeGreaterThan(0);
    const pending = versions[dropped]!.adjust!;
    expect(pending.liveKey).toBe('n1,n2');
    // Renewals only (every one a new lease record with the same content): no step is needed.
    const steps = n1.coordinator.steps;
    await run(kv, n1.coordinator, 3000, ['n1', 'n2']);
    expect(n1.coordinator.steps - steps).toBeLessThanOrEqual(1);
    await run(kv, n1.coordinator, 8000, ['n1', 'n2']);
    const adjusted = versions.findIndex((t) => t.adjust === null && t.baseline.map((n) => n.id).join(',') === 'n1,n2');
    expect(adjusted).toBeGreaterThan(dropped);
    // Ticks come at multiples of 50 ms: the first one once the soft timeout (10 s) has passed.
    const softMs = n1.view.topo!.autoAdjust.softTimeoutMs;
    expect(writtenAt[adjusted]).toBe(Math.ceil((pending.lastAt + softMs) / 50) * 50);
  });
});
