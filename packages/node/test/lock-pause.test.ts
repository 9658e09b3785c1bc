/**
 * ADR 0072 on running nodes: the primary of a lock dies while the control plane takes no writes
 * (a NATS stream leader change), so nobody can be promoted until it is back, and the outage
 * outlasts the lock's lease. The holder's release, retried by the client all along, lands on the
 * promoted backup, which did not count the time the partition had no primary: the release
 * succeeds (it was refused with LockNotHeldError before). Soak runs hit this (docs/operations.md
 * §5, seeds 23 and 31).
 */
import { describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { MemoryControlPlane, silentLogger, startNode, type GridNode, type Logger, type TopologyRecord } from '@gridlink/node';
import { pausedFor } from '../src/partitions/driver.js';
import { Op } from '@gridlink/protocol';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { TestConnection, untilAnswered } from './helpers/client.js';
import { THREE_PARTITIONS, optionsOf, perTestNodes, startThree } from './helpers/grid.js';
import { until } from './helpers/until.js';

/** Every control plane refuses reads and writes (a NATS stream leader election), or answers again. */
function outage(planes: Iterable<FlakyControlPlane>, on: boolean): void {
  for (const p of planes) {
    p.failWrites = on;
    p.failReads = on;
  }
}

/** 'released', or the name of the error the release failed with. */
const outcomeOf = (release: Promise<void>): Promise<string> =>
  release.then(
    () => 'released',
    (err: unknown) => (err instanceof Error ? err.name : String(err)),
  );

/** A logger for the three nodes that keeps every line, and the line with this message. */
function recorder(): { logger: Logger; line(msg: string): Record<string, unknown> | undefined } {
  const lines: { msg: string; fields?: Record<string, unknown> }[] = [];
  const at = (msg: string, fields?: Record<string, unknown>): void => void lines.push({ msg, fields });
  return { logger: { debug: () => undefined, info: at, warn: at, error: at }, line: (msg) => lines.find((l) => l.msg === msg)?.fields };
}

describe('pausedFor: how long a promoted partition had no primary', () => {
  const topo = (members: Record<string, string>, primary: string): TopologyRecord =>
    ({ members: Object.fromEntries(Object.entries(members).map(([id, epoch]) => [id, { epoch }])), owners: [[primary, 'c']] }) as unknown as TopologyRecord;
  const prev = topo({ a: 'a1', b: 'b1', c: 'c1' }, 'b');
  const heardAt = (at: Record<string, number>) => (id: string, epoch: string): number | undefined => at[`${id}/${epoch}`];
  const NOW = 10_000;

  it('counts from the last answer of the life that was primary, once that life left', () => {
    const rec = topo({ a: 'a1', c: 'c1' }, 'c');
    expect(pausedFor(prev, rec, 0, 'c', heardAt({ 'b/b1': 7000 }), NOW)).toBe(3000);
    // Restarted under the same id (admitted again or not): its new life's answers do not count.
    expect(pausedFor(prev, topo({ a: 'a1', b: 'b2', c: 'c1' }, 'c'), 0, 'c', heardAt({ 'b/b1': 7000, 'b/b2': 9900 }), NOW)).toBe(3000);
  });

  it('counts nothing when the old primary lives on, was this node, or was never heard', () => {
    expect(pausedFor(prev, topo({ a: 'a1', b: 'b1', c: 'c1' }, 'c'), 0, 'c', heardAt({ 'b/b1': 7000 }), NOW)).toBe(0);
    expect(pausedFor(topo({ a: 'a1', c: 'c1' }, 'c'), topo({ a: 'a1', c: 'c1' }, 'c'), 0, 'c', heardAt({}), NOW)).toBe(0);
    expect(pausedFor(prev, topo({ a: 'a1', c: 'c1' }, 'c'), 0, 'c', heardAt({}), NOW)).toBe(0);
  });
});

describe('a lock through a control-plane outage longer than its lease (ADR 0072)', () => {
  const { nodes, connectFast } = perTestNodes();

  // Restarted: a new life under the same id and address answers the others' "are you alive?"
  // under a new epoch during the outage (the soak's case); the pause counts from the old life's
  // last answer.
  it.each([{ restarted: false }, { restarted: true }])('its primary killed: its holder releases it once a backup is promoted, although the outage outlasted the lease; the next holder gets a larger token (restarted: $restarted)', async ({ restarted }) => {
    const inner = new MemoryControlPlane();
    const planes = new Map(['a', 'b', 'c'].map((id) => [id, new FlakyControlPlane(inner)]));
    const log = recorder();
    await startThree(nodes, (id) => planes.get(id)!, { logger: log.logger });
    // A lock whose primary is not the coordinator (a): b or c dies.
    const topo = nodes[0]!.topology()!;
    let name = '';
    for (let i = 0; name === '' && i < 1000; i++) {
      const owners = topo.owners[partitionOfBytes(encodeKey(`lock-${i}`), THREE_PARTITIONS)]!;
      if (owners[0] !== 'a' && owners.length === 2) name = `lock-${i}`;
    }
    const primary = nodes.find((n) => n.id === topo.owners[partitionOfBytes(encodeKey(name), THREE_PARTITIONS)]![0])!;
    const client = await connectFast(nodes.map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 20_000 });

    // The others have heard the primary answer their "are you alive?" (every 250 ms): a cluster
    // that has run a moment (the pause is counted from that answer; unknown, nothing is counted).
    const epoch = topo.members[primary.id]!.epoch;
    const heard = (n: GridNode): number | undefined => (n as unknown as { reach: { lastAnswered(id: string, e: string): number | undefined } }).reach.lastAnswered(primary.id, epoch);
    await until(() => nodes.every((n) => n === primary || heard(n) !== undefined), 'the others to hear the primary answer', 5000);
    // A lease with room for the client's retries after the promotion (backoff up to 500 ms).
    const LEASE_MS = 2000;
    const h = (await client.lock(name).tryAcquire({ leaseMs: LEASE_MS, autoRenew: false }))!;
    expect(h).not.toBeNull();

    // The KV takes nothing; the lock's primary dies; the release is under way meanwhile.
    outage(planes.values(), true);
    const outageAt = performance.now();
    primary.kill();
    if (restarted) {
      // Its control plane takes no writes either, but answers reads (it could not start otherwise).
      const plane = new FlakyControlPlane(inner);
      plane.failWrites = true;
      planes.set(`${primary.id}'`, plane);
      nodes.push(await startNode(optionsOf(primary.id, plane, { port: primary.port, logger: silentLogger })));
    }
    const release = outcomeOf(h.release());
    // The outage outlasts the lease (a leader change of 5–8 s against a 5 s lease).
    await until(() => performance.now() - outageAt > LEASE_MS + 500, 'the outage to outlast the lease', 10_000);
    outage(planes.values(), false);
    const outcome = await release;
    expect(outcome).toBe('released');
    const resumed = log.line('lock leases resumed as primary: the time without a serving primary is not counted');
    expect(resumed).toMatchObject({ cause: 'promoted', partitions: 1, extended: 1, freed: 0 });
    expect(resumed?.['pausedMs']).toBeGreaterThanOrEqual(LEASE_MS + 500);
    const next = (await client.lock(name).tryAcquire({ leaseMs: LEASE_MS }))!;
    expect(next).not.toBeNull();
    expect(next.fencingToken).toBeGreaterThan(h.fencingToken);
    await next.release();
  }, 30_000);

  it('its primary without a backup to vouch for it answers NOT_READY while the KV is out: the holder releases the lock once it serves again', async () => {
    const inner = new MemoryControlPlane();
    const planes = new Map(['a', 'b', 'c'].map((id) => [id, new FlakyControlPlane(inner)]));
    const log = recorder();
    // No backups: nobody can vouch for a primary whose lease the KV cannot confirm (ADR 0007).
    await startThree(nodes, (id) => planes.get(id)!, { backups: 0, logger: log.logger });
    const client = await connectFast(nodes.map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 20_000 });
    const LEASE_MS = 2000;
    const h = (await client.lock('solo').tryAcquire({ leaseMs: LEASE_MS, autoRenew: false }))!;
    expect(h).not.toBeNull();

    outage(planes.values(), true);
    const outageAt = performance.now();
    // The lock's primary stops serving 850 ms after its last renewal: NOT_READY from then on.
    const topo = nodes[0]!.topology()!;
    const primary = nodes.find((n) => n.id === topo.owners[partitionOfBytes(encodeKey('solo'), THREE_PARTITIONS)]![0])!;
    await until(() => !primary.isServing(), 'the primary to stop serving', 5000);
    // The release sent straight to the primary every 10 ms: the first attempt it serves is
    // answered within milliseconds of its serving again, often before its next check of what it
    // can serve (every 250 ms). A soak run caught that race: the leases must resume before
    // anything is served (without that, this test failed 1 run in 3).
    const raw = await TestConnection.connect(`127.0.0.1:${primary.port}`);
    try {
      const release = untilAnswered(() => raw.call<{ released: boolean }>(Op.LOCK_RELEASE, { name: encodeKey('solo'), token: h.fencingToken, seq: 1 }), 'the release served', 15_000);
      await until(() => performance.now() - outageAt > LEASE_MS + 500, 'the outage to outlast the lease', 10_000);
      outage(planes.values(), false);
      expect(await release).toEqual({ released: true });
    } finally {
      raw.close();
    }
    expect(log.line('lock leases resumed as primary: the time without a serving primary is not counted')).toMatchObject({ cause: 'serving again', partitions: 1, extended: 1, freed: 0 });
    // Nobody was declared gone: the same three members.
    expect(Object.keys(nodes[0]!.topology()!.members).sort()).toEqual(['a', 'b', 'c']);
  }, 30_000);
});
