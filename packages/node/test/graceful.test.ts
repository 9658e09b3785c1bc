import { describe, expect, it } from 'vitest';
import { bytesSerializer, type GridCache } from '@gridlink/client';
import { handOffDone, handOffRefused, nextTopology, initialTopology } from '@gridlink/node/internal';
import type { LeaseRecord, TopologyRecord } from '@gridlink/node';
import fc from 'fast-check';
import { WriteStream } from './helpers/workload.js';
import { perTestCluster } from './helpers/grid.js';
import { recordingLogger } from './helpers/logger.js';

const P = 32;

const lease = (id: string, extra: Partial<LeaseRecord> = {}): LeaseRecord => ({ id, epoch: `${id}-e`, host: '127.0.0.1', port: 1, synced: {}, ...extra });

/**
 * Runs `body` while 16 sequential writers put to `keys`, then stops them: no write may have
 * failed, and every key reads back its last acknowledged value (or the one in flight at the stop).
 */
async function underWrites(cache: GridCache<string, Uint8Array>, keys: string[], body: (stream: WriteStream) => Promise<void>): Promise<void> {
  const stream = new WriteStream(cache, keys);
  try {
    await body(stream);
  } finally {
    await stream.stop();
  }
  expect(stream.failures).toEqual([]);
  await stream.verify(cache);
}

describe('graceful stop: the leaving flag in nextTopology', () => {
  it('moves primaryship off a leaving node to a caught-up owner, keeping it as the last owner', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 2 }), fc.nat(), (n, backups, pick) => {
        const ids = Array.from({ length: n }, (_, i) => `n${i}`);
        const t0 = initialTopology({ clusterId: 'c', partitions: 16, backups, leases: ids.map((id) => lease(id)) });
        const leaving = ids[pick % n]!;
        const t1 = nextTopology(t0, ids.map((id) => lease(id, id === leaving ? { leaving: true } : {})), 0);
        const after = t1 ?? t0;
        for (let p = 0; p < 16; p++) {
          const before = t0.owners[p]!;
          const o = after.owners[p]!;
          // same holders: nothing is dropped or added by the flag
          expect([...o].sort()).toEqual([...before].sort());
          if (before.length > 1 && before.includes(leaving)) expect(o[0]).not.toBe(leaving);
          if (before.length === 1) expect(o).toEqual(before);
        }
      }),
    );
  });
});

describe('graceful stop: several nodes leaving at once (ADR 0067)', () => {
  it('the record marks the members whose lease says leaving, and only while it says so', () => {
    const ids = ['n0', 'n1', 'n2'];
    const t0 = initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: ids.map((id) => lease(id)) });
    const t1 = nextTopology(t0, ids.map((id) => lease(id, id === 'n1' ? { leaving: true } : {})), 0)!;
    expect(t1).not.toBeNull();
    expect(Object.entries(t1.members).map(([id, m]) => [id, m.leaving])).toEqual([['n0', undefined], ['n1', true], ['n2', undefined]]);
    // The flag alone is a change: a member outside the baseline (it owns nothing) that starts
    // leaving still gets a new record, so every node learns it.
    const off = { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 };
    const two = initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: [lease('n0'), lease('n1')], autoAdjust: off });
    const three = nextTopology(two, ids.map((id) => lease(id)), 0)!;
    expect(three.owners.flat()).not.toContain('n2');
    expect(nextTopology(three, ids.map((id) => lease(id)), 1)).toBeNull();
    const t2 = nextTopology(three, ids.map((id) => lease(id, id === 'n2' ? { leaving: true } : {})), 2);
    expect(t2?.members['n2']?.leaving).toBe(true);
    expect(t2?.owners).toEqual(three.owners);
    // Back to a plain lease (a node that restarted under the same epoch cannot, but a record must
    // not keep a flag its lease no longer has).
    const t3 = nextTopology(t1, ids.map((id) => lease(id)), 0);
    expect(t3?.members['n1']?.leaving).toBeUndefined();
  });

  it('handOffRefused says so exactly where the coordinator keeps a leaving primary because every other owner leaves too', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 3 }), fc.uniqueArray(fc.nat(4), { minLength: 1, maxLength: 5 }), (n, backups, picks) => {
        const ids = Array.from({ length: n }, (_, i) => `n${i}`);
        const leases = ids.map((id) => lease(id));
        let rec = initialTopology({ clusterId: 'c', partitions: 16, backups, leases });
        const leavers = new Set(picks.map((i) => ids[i % n]!));
        const marked = ids.map((id) => lease(id, leavers.has(id) ? { leaving: true } : {}));
        // The step that sees the leases, then one more on the same leases: the order is final.
        rec = nextTopology(rec, marked, 0) ?? rec;
        const after = nextTopology(rec, marked, 1) ?? rec;
        for (let p = 0; p < 16; p++) {
          const o = rec.owners[p]!;
          const primary = o[0]!;
          if (!leavers.has(primary)) continue;
          const everyOtherLeaves = o.length > 1 && o.slice(1).every((id) => leavers.has(id));
          expect(handOffRefused(rec, p, primary, [])).toBe(everyOtherLeaves);
          // Refused: the coordinator keeps it primary (its stop does not wait for it).
          if (everyOtherLeaves) expect(after.owners[p]![0]).toBe(primary);
          // Not refused: a staying owner is already first, so a leaving node leads only such partitions.
          else if (o.length > 1) expect.unreachable(`p${p}: ${JSON.stringify(o)} led by a leaving node with a staying owner`);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('nodes stopping together, as a model (ADR 0067)', () => {
  /** What a leaving node waits for (`GridNode` judges with the same function). */
  const mayGo = (rec: TopologyRecord, id: string): boolean => handOffDone(rec, id, []);

  it('while one member stays, no partition is lost and every leaving node gets to go (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 2 }), fc.uniqueArray(fc.nat(4), { minLength: 1, maxLength: 4 }), fc.boolean(), fc.boolean(), (n, backups, picks, oneByOne, staggered) => {
        const ids = Array.from({ length: n }, (_, i) => `n${i}`);
        const leavers = new Set(picks.map((i) => ids[i % n]!));
        if (leavers.size === n) leavers.delete(ids[0]!);
        const alive = new Map(ids.map((id) => [id, lease(id)]));
        let rec = initialTopology({ clusterId: 'c', partitions: 16, backups, leases: [...alive.values()] });
        // All at once, or one more leaver each step (its SIGTERM a moment after the other's).
        const toMark = [...leavers];
        if (!staggered) for (const id of toMark.splice(0)) alive.get(id)!.leaving = true;
        let now = 0;
        for (let step = 0; step < 60 && [...leavers].some((id) => alive.has(id)); step++) {
          const next = toMark.shift();
          if (next !== undefined) alive.get(next)!.leaving = true;
          // Pulls complete at once: every puller reports the partitions it was asked for.
          for (const l of alive.values()) for (let p = 0; p < rec.partitions; p++) if (rec.syncing[p]!.some((e) => e.id === l.id)) l.synced[String(p)] = rec.version;
          const prev = rec;
          rec = nextTopology(rec, [...alive.values()], (now += 10)) ?? rec;
          // A step never moves a primaryship onto a leaving owner while the previous primary is
          // still an owner: that owner may have handed off already and stopped taking the
          // replication of writes the previous primary acknowledged (found by the soak: a
          // partition's primaryship went back to the first of two leaving owners, which then
          // overwrote the other's newer copy with its own).
          for (let p = 0; p < rec.partitions; p++) {
            const was = prev.owners[p]![0];
            const now0 = rec.owners[p]![0];
            if (now0 !== undefined && was !== undefined && now0 !== was && rec.owners[p]!.includes(was)) {
              expect(alive.get(now0)?.leaving === true, `p${p}: ${JSON.stringify(prev.owners[p])} -> ${JSON.stringify(rec.owners[p])}`).toBe(false);
            }
          }
          // Leaving nodes whose stop would wait no longer go (one per step, or all that may at once).
          const going = [...leavers].filter((id) => alive.has(id) && alive.get(id)!.leaving === true && mayGo(rec, id));
          for (const id of oneByOne ? going.slice(0, 1) : going) alive.delete(id);
        }
        expect([...leavers].filter((id) => alive.has(id))).toEqual([]);
        rec = nextTopology(rec, [...alive.values()], (now += 10)) ?? rec;
        expect(rec.lost).toEqual([]);
        for (let p = 0; p < rec.partitions; p++) expect(rec.owners[p]!.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });
});

describe('graceful stop on LocalCluster', () => {
  const fx = perTestCluster();

  it('rolling restart of every node under 16-way load: no failed operation, no lost acknowledged write', async () => {
    const cluster = await fx.start({ nodes: 3, partitions: P, backups: 1, autoAdjust: { enabled: false } });
    const c = cluster;
    const client = await fx.connectFast(c.endpoints, { requestTimeout: 1000, operationTimeout: 20_000 });
    const cache = client.cache<string, Uint8Array>('roll', { serializer: bytesSerializer });
    const keys = Array.from({ length: 16 }, (_, i) => `k-${i}`);
    await underWrites(cache, keys, async (stream) => {
      await stream.waitForAcks(keys, 0, 64);
      for (const id of [...c.nodeIds]) {
        const node = c.node(id);
        const primariesBefore = node.partitionCounts().primary;
        expect(primariesBefore).toBeGreaterThan(0);
        const stopping = node.stop();
        // While it hands off it still holds a lease: the topology shows it primary of nothing.
        await c.waitForTopology((t) => t.owners.every((o) => o[0] !== id || o.length === 1));
        await stopping;
        expect(node.lastHandoffMs).toBeGreaterThan(0);
        await c.restart(id);
        await c.waitForStable(20_000);
        await stream.waitForAcks(keys, Date.now(), 32);
      }
    });
  }, 60_000);

  it('with no backups, the stop first has the node that stays pull its partitions (ADR 0067), well within handoffTimeoutMs, and nothing is lost', async () => {
    const cluster = await fx.start({ nodes: 2, partitions: 8, backups: 0, autoAdjust: { enabled: false }, handoffTimeoutMs: 10_000 });
    await cluster.waitForStable();
    const [stays, goes] = cluster.nodeIds as [string, string];
    const client = await fx.connectFast(cluster.endpoints);
    const cache = client.cache<string, string>('solo');
    const keys = Array.from({ length: 40 }, (_, i) => `k-${i}`);
    for (const k of keys) await cache.put(k, `v-${k}`);
    const node = cluster.node(goes);
    expect(node.partitionCounts().primary).toBeGreaterThan(0);
    await node.stop();
    expect(node.running).toBe(false);
    expect(node.lastHandoffMs).toBeLessThan(10_000);
    await cluster.waitForTopology((t) => t.members[goes] === undefined);
    expect(cluster.topology().lost).toEqual([]);
    expect(cluster.topology().owners.every((o) => o.length === 1 && o[0] === stays)).toBe(true);
    for (const k of keys) expect(await cache.get(k)).toBe(`v-${k}`);
  });

  it('every node stopped at once: none waits for a hand-off to a node that is stopping too (ADR 0067)', async () => {
    const logger = recordingLogger();
    const { warnings } = logger;
    const cluster = await fx.start({ nodes: 3, partitions: P, backups: 2, autoAdjust: { enabled: false }, handoffTimeoutMs: 30_000, logger });
    await cluster.waitForStable();
    const nodes = cluster.nodeIds.map((id) => cluster.node(id));
    for (const n of nodes) expect(n.partitionCounts().primary).toBeGreaterThan(0);
    await Promise.all(nodes.map((n) => n.stop()));
    for (const n of nodes) expect(n.running).toBe(false);
    // Before, each waited the whole handoffTimeoutMs for owners that could never take over.
    expect(warnings.filter((w) => w.startsWith('handoff timed out'))).toEqual([]);
  });

  it('two of three nodes stopped at once under load (backups = 1): the survivor gets every partition in time, nothing failed or lost (ADR 0067)', async () => {
    const logger = recordingLogger();
    const { warnings } = logger;
    const cluster = await fx.start({ nodes: 3, partitions: P, backups: 1, autoAdjust: { enabled: false }, handoffTimeoutMs: 5000, logger });
    await cluster.waitForStable();
    const [survivor, ...stopping] = cluster.nodeIds as [string, string, string];
    const client = await fx.connectFast(cluster.endpoints, { requestTimeout: 1000, operationTimeout: 20_000 });
    const cache = client.cache<string, Uint8Array>('two', { serializer: bytesSerializer });
    const keys = Array.from({ length: 16 }, (_, i) => `k-${i}`);
    await underWrites(cache, keys, async (stream) => {
      await stream.waitForAcks(keys, 0, 64);
      // Partitions both stopping nodes own: only the survivor can keep them, once it has pulled them.
      const shared = cluster.topology().owners.filter((o) => stopping.every((id) => o.includes(id))).length;
      expect(shared).toBeGreaterThan(0);
      await Promise.all(stopping.map((id) => cluster.node(id).stop()));
      // Before, both waited out handoffTimeoutMs together for a hand-off between them, so the
      // survivor's pulls started only as both stopped, and the shared partitions were lost.
      expect(warnings.filter((w) => w.startsWith('handoff timed out'))).toEqual([]);
      await cluster.waitForTopology((t) => Object.keys(t.members).join() === survivor && t.owners.every((o) => o.length === 1 && o[0] === survivor));
      expect(cluster.topology().lost).toEqual([]);
      await stream.waitForAcks(keys, Date.now(), 32);
    });
  }, 60_000);

  it('a stop whose handoff cannot complete (the coordinator is frozen) ends at handoffTimeoutMs', async () => {
    const cluster = await fx.start({ nodes: 2, partitions: 8, backups: 1, autoAdjust: { enabled: false }, handoffTimeoutMs: 300 });
    const c = cluster;
    await c.waitForStable();
    const [coordinator, leaving] = c.nodeIds as [string, string];
    const node = c.node(leaving);
    expect(node.partitionCounts().primary).toBeGreaterThan(0);
    const versionBefore = c.topologyVersion;
    c.hang(coordinator);
    await node.stop();
    expect(node.running).toBe(false);
    expect(node.lastHandoffMs).toBeGreaterThanOrEqual(300);
    // Nobody moved its primaryships: they fail over as after a kill once the coordinator is back.
    expect(c.topologyVersion).toBe(versionBefore);
    c.resume(coordinator);
    await c.waitForTopology((t) => t.members[leaving] === undefined && t.owners.every((o) => o[0] === coordinator));
  });
});
