import { afterEach, describe, expect, it } from 'vitest';
import { computeAssignment, diffAssignments, encodeKey, partitionOf } from '@gridlink/affinity';
import { ErrorCode, Op, ResponseFlag } from '@gridlink/protocol';
import { PartitionLostError, bytesSerializer, type GridCache, type GridClient } from '@gridlink/client';
import { LocalCluster, type TopologyRecord } from '@gridlink/node';
import { TestConnection } from './helpers/client.js';
import { connectClient } from './helpers/grid.js';

const P = 64;
const enc = new TextEncoder();
const dec = new TextDecoder();

function assignmentOf(t: TopologyRecord) {
  return computeAssignment({ partitions: t.partitions, backups: t.backups, baseline: t.baseline, alive: t.baseline.map((n) => n.id) });
}

function totalTransfers(c: LocalCluster): number {
  return c.nodeIds.reduce((n, id) => n + c.node(id).transfers, 0);
}

describe('baseline topology and rebalancing', () => {
  let cluster: LocalCluster | undefined;
  const clients: GridClient[] = [];
  const raws: TestConnection[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    for (const r of raws.splice(0)) r.close();
    await cluster?.stop();
    cluster = undefined;
  });

  /** Cache 'b' (raw bytes, so the wire-level reads below decode the same values) of a new client. */
  async function client(endpoints: string[]): Promise<GridCache<string, Uint8Array>> {
    const cl = await connectClient(endpoints);
    clients.push(cl);
    return cl.cache<string, Uint8Array>('b', { serializer: bytesSerializer });
  }

  async function fill(cl: GridCache<string, Uint8Array>, n: number, tag: string): Promise<void> {
    for (let i = 0; i < n; i++) await cl.put(`k${i}`, enc.encode(`${tag}${i}`));
  }

  async function check(cl: GridCache<string, Uint8Array>, n: number, tag: string): Promise<void> {
    for (let i = 0; i < n; i++) {
      const v = await cl.get(`k${i}`);
      expect(v && dec.decode(v)).toBe(`${tag}${i}`);
    }
  }

  /** The client's typed error for a lost partition, naming the partition and the wire code. */
  function expectLost(err: unknown, partition: number): void {
    expect(err).toBeInstanceOf(PartitionLostError);
    expect((err as PartitionLostError).wireCode).toBe(ErrorCode.PARTITION_LOST);
    expect((err as PartitionLostError).partition).toBe(partition);
  }

  it('adding and removing nodes moves exactly the partitions the affinity diff names', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const cl = await client(c.endpoints);
    await fill(cl, 100, 'a');
    const t1 = c.topology();

    // A joining node outside the baseline moves nothing.
    const added = await c.addNode();
    await c.waitForTopology((t) => t.members[added] !== undefined);
    expect(c.topology().owners).toEqual(t1.owners);

    // Putting it in the baseline moves exactly the diff.
    const transfersBefore = totalTransfers(c);
    await c.setBaseline([...t1.baseline.map((n) => n.id), added]);
    const t2 = await c.waitForStable();
    const diff = diffAssignments(assignmentOf(t1), assignmentOf(t2)).filter((d) => d.ownersChanged);
    const changed = t2.owners.flatMap((o, p) => (JSON.stringify(o) !== JSON.stringify(t1.owners[p]) ? [p] : []));
    expect(changed).toEqual(diff.map((d) => d.partition));
    for (let p = 0; p < P; p++) expect(t2.owners[p]).toEqual(assignmentOf(t2).owners[p]);
    const expectedPulls = diff.reduce((n, d) => n + d.after.filter((id) => !d.before.includes(id)).length, 0);
    expect(totalTransfers(c) - transfersBefore).toBe(expectedPulls);
    expect(c.node(added).partitionCounts().owned).toBeGreaterThan(0);
    await check(cl, 100, 'a');

    // Removing a node (gone for good, baseline set without it) moves exactly the diff again.
    const removed = t1.baseline[0]!.id;
    await c.kill(removed);
    await c.waitForTopology((t) => t.members[removed] === undefined);
    const t3 = c.topology();
    const transfers3 = totalTransfers(c);
    await c.setBaseline(c.nodeIds);
    const t4 = await c.waitForStable();
    const diff2 = diffAssignments(assignmentOf(t3), assignmentOf(t4)).filter((d) => d.ownersChanged);
    const expectedPulls2 = diff2.reduce((n, d) => n + d.after.filter((id) => !d.before.includes(id)).length, 0);
    expect(totalTransfers(c) - transfers3).toBe(expectedPulls2);
    for (let p = 0; p < P; p++) expect(t4.owners[p]).toEqual(assignmentOf(t4).owners[p]);
    const touched = new Set(diff2.map((d) => d.partition));
    for (let p = 0; p < P; p++) if (!touched.has(p)) expect(t4.owners[p]).toEqual(t3.owners[p]);
    await check(cl, 100, 'a');
  });

  it('auto-adjust fires after the soft timeout, restarted by each change, and no later than the hard timeout', async () => {
    const soft = 1000;
    const hard = 2000;
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: true, softTimeoutMs: soft, hardTimeoutMs: hard } });
    cluster = c;
    const baseline0 = c.topology().baseline.map((n) => n.id);
    // Soft: one change, then quiet.
    const a = await c.addNode();
    const pending = await c.waitForTopology((t) => t.adjust !== null);
    const firstAt = pending.adjust!.firstAt;
    const adjusted = await c.waitForTopology((t) => t.baseline.some((n) => n.id === a), 5000);
    const firedAt = Date.now();
    expect(firedAt - firstAt).toBeGreaterThanOrEqual(soft);
    expect(adjusted.baseline.map((n) => n.id).sort()).toEqual([...baseline0, a].sort());
    await c.waitForStable();

    // Hard: keep changing the live set faster than the soft timeout until the baseline moves.
    let lastPending: { firstAt: number; lastAt: number } | null = null;
    const track = (t: { adjust: { firstAt: number; lastAt: number } | null }): void => {
      if (t.adjust) lastPending = t.adjust;
    };
    let fired = false;
    const changer = (async () => {
      for (let i = 0; i < 12 && !fired; i++) {
        await c.addNode();
        await new Promise((r) => setTimeout(r, soft / 4));
      }
    })();
    const first = await c.waitForTopology((t) => t.adjust !== null);
    const start = first.adjust!.firstAt;
    const done = await c.waitForTopology((t) => {
      track(t);
      return t.adjust === null && t.baseline.length > 4;
    }, 6000);
    fired = true;
    const at = Date.now();
    await changer;
    expect(at - start).toBeLessThanOrEqual(hard + 1000);
    expect(at - start).toBeGreaterThanOrEqual(hard - 50);
    // It was the hard cap: the soft timeout had been restarted less than `soft` before.
    expect(lastPending).not.toBeNull();
    expect(at - lastPending!.lastAt).toBeLessThan(soft);
    expect(done.baseline.length).toBeGreaterThan(4);
  });

  it('a lost partition fails with PARTITION_LOST (not empty data) until reset', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const cl = await client(c.endpoints);
    await fill(cl, 60, 'x');
    const [n1, n2, n3] = c.nodeIds as [string, string, string];
    const t = c.topology();
    const lostKey = Array.from({ length: 60 }, (_, i) => `k${i}`).find((k) => {
      const o = t.owners[partitionOf(k, P)]!;
      return o.includes(n1) && o.includes(n2);
    })!;
    const safeKey = Array.from({ length: 60 }, (_, i) => `k${i}`).find((k) => t.owners[partitionOf(k, P)]!.includes(n3) && !t.owners[partitionOf(k, P)]!.includes(n1) && !t.owners[partitionOf(k, P)]!.includes(n2));
    await c.kill(n1);
    await c.kill(n2);
    await c.waitForTopology((x) => x.members[n1] === undefined && x.members[n2] === undefined);
    const lp = partitionOf(lostKey, P);
    expect(c.topology().lost).toContain(lp);
    expectLost(await cl.get(lostKey).catch((e: unknown) => e), lp);
    expectLost(await cl.put(lostKey, enc.encode('z')).catch((e: unknown) => e), lp);
    if (safeKey !== undefined) {
      const v = await cl.get(safeKey);
      expect(v && dec.decode(v)).toBe(`x${safeKey.slice(1)}`);
    }
    // A returning (empty) owner does not make the partition readable as empty.
    await c.restart(n1);
    await c.waitForTopology((x) => x.members[n1] !== undefined);
    expectLost(await cl.get(lostKey).catch((e: unknown) => e), lp);
    // The operator accepts the loss.
    await c.resetLostPartitions();
    await c.waitForTopology((x) => x.lost.length === 0 && (x.owners[lp] ?? []).length > 0);
    expect(await cl.get(lostKey)).toBeUndefined();
  });

  it('a node returning after the baseline moved on without it serves none of its old data', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const cl = await client(c.endpoints);
    await fill(cl, 60, 'old');
    const victim = c.nodeIds[0]!;
    c.hang(victim);
    await c.waitForTopology((t) => t.members[victim] === undefined);
    await c.setBaseline(c.nodeIds.filter((id) => id !== victim));
    await c.waitForStable(10_000, c.nodeIds.filter((id) => id !== victim));
    const others = await client(c.nodeIds.filter((id) => id !== victim).map((id) => c.endpointOf(id)));
    await fill(others, 60, 'new');
    c.resume(victim);
    await c.waitForStable();
    expect(c.node(victim).partitionCounts().owned).toBe(0);
    expect(c.node(victim).store.heldPartitions()).toEqual([]);
    // On the wire, through the returned node: every read is forwarded to the new owners.
    const direct = await TestConnection.connect(c.endpointOf(victim));
    raws.push(direct);
    for (let i = 0; i < 60; i++) {
      const f = await direct.request(Op.CACHE_GET, { cache: 'b', key: encodeKey(`k${i}`) });
      expect(f.flags & ResponseFlag.ERROR).toBe(0);
      expect(f.flags & ResponseFlag.FORWARDED).not.toBe(0);
      expect(dec.decode((f.payload as { value: Uint8Array }).value)).toBe(`new${i}`);
    }
  });
});
