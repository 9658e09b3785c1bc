/**
 * Records read from the control plane: every record the coordinator can write passes the shape
 * check, anything else is refused without throwing, and a cluster whose topology or lease key is
 * overwritten with garbage keeps serving, writes the topology again and fails over as before.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Kvm } from '@nats-io/kv';
import { GridClient } from '@gridlink/client';
import { NatsCluster } from '@gridlink/testkit';
import { silentLogger, startNode, type GridNode, type LeaseRecord, type TopologyRecord } from '@gridlink/node';
import { NatsControlPlane } from '../src/control/nats.js';
import { CACHE_PREFIX, LEASE_PREFIX, TOPOLOGY_KEY, coordinatorStep, initialTopology } from '@gridlink/node/internal';
import { leaseProblem, topologyProblem } from '../src/control/records.js';
import { perTestCluster } from './helpers/grid.js';
import { until } from './helpers/until.js';

const PARTITIONS = 16;
const lease = (id: string, epoch: string, synced: Record<string, number> = {}, leaving?: boolean): LeaseRecord => ({
  id,
  epoch,
  host: '127.0.0.1',
  port: 1000 + Number(id.slice(1)),
  synced,
  ...(leaving ? { leaving } : {}),
});

/** Records a coordinator writes over a run of joins, deaths, restarts, pulls done and graceful stops. */
const runs = fc
  .record({
    start: fc.integer({ min: 1, max: 4 }),
    backups: fc.integer({ min: 0, max: 2 }),
    steps: fc.array(fc.record({ node: fc.integer({ min: 0, max: 5 }), act: fc.constantFrom('toggle', 'restart', 'sync', 'leave') }), { maxLength: 25 }),
  })
  .map(({ start, backups, steps }) => {
    const live = new Map<string, LeaseRecord>();
    for (let i = 0; i < start; i++) live.set(`n${i}`, lease(`n${i}`, `e${i}-0`));
    let rec = initialTopology({ clusterId: 'c', partitions: PARTITIONS, backups, leases: [...live.values()] });
    const records: TopologyRecord[] = [rec];
    let now = 0;
    for (const [i, s] of steps.entries()) {
      const id = `n${s.node}`;
      const l = live.get(id);
      if (s.act === 'toggle') {
        if (l) live.delete(id);
        else live.set(id, lease(id, `e${s.node}-${i}`));
      } else if (s.act === 'restart' && l) live.set(id, lease(id, `e${s.node}-${i}`));
      else if (s.act === 'sync' && l) {
        const synced: Record<string, number> = {};
        rec.syncing.forEach((es, p) => es.forEach((e) => e.id === id && (synced[String(p)] = e.since)));
        live.set(id, { ...l, synced });
      } else if (s.act === 'leave' && l) live.set(id, { ...l, leaving: true });
      now += 20_000;
      const next = coordinatorStep(rec, [...live.values()], now);
      if (next) {
        rec = next;
        records.push(rec);
      }
    }
    return records;
  });

describe('shape checks of control plane records', () => {
  it('pass every topology record the coordinator writes, as the KV stores it (JSON)', () => {
    fc.assert(
      fc.property(runs, (records) => {
        for (const r of records) {
          expect(topologyProblem(r, PARTITIONS)).toBeNull();
          expect(topologyProblem(JSON.parse(JSON.stringify(r)), PARTITIONS)).toBeNull();
        }
      }),
      { numRuns: 150 },
    );
  });

  it('never throw, and refuse what is not a record', () => {
    fc.assert(
      fc.property(fc.anything(), (v) => {
        const t = topologyProblem(v, PARTITIONS);
        const l = leaseProblem(v, 'n1');
        expect(t === null || typeof t === 'string').toBe(true);
        expect(l === null || typeof l === 'string').toBe(true);
      }),
      { numRuns: 500 },
    );
    for (const v of [null, 1, 'x', [], {}, { version: 1 }]) {
      expect(topologyProblem(v)).toEqual(expect.any(String));
      expect(leaseProblem(v, 'n1')).toEqual(expect.any(String));
    }
  });

  it('refuse a record with any field of the wrong kind, or of another partition count', () => {
    const good = initialTopology({ clusterId: 'c', partitions: PARTITIONS, backups: 1, leases: [lease('n1', 'a'), lease('n2', 'b')] });
    const wrong: [string, unknown][] = [
      ['clusterId', 7],
      ['version', -1],
      ['partitions', 0],
      ['backups', 'one'],
      ['baseline', {}],
      ['members', { n1: { epoch: 1 } }],
      ['departed', { n1: 3 }],
      ['addresses', { n1: { host: 'h' } }],
      ['owners', good.owners.slice(1)],
      ['owners', good.owners.map(() => [1])],
      ['syncing', good.syncing.map(() => [{ id: 'n1' }])],
      ['lost', [PARTITIONS]],
      ['lostCaches', { a: [-1] }],
      ['behind', { [String(PARTITIONS)]: { n1: { rank: 1, since: 1 } } }],
      ['autoAdjust', null],
      ['adjust', { firstAt: 'now' }],
    ];
    expect(topologyProblem(good, PARTITIONS)).toBeNull();
    for (const [field, value] of wrong) expect(topologyProblem({ ...good, [field]: value }, PARTITIONS), field).toMatch(new RegExp(`^${field}`));
    expect(topologyProblem(good, PARTITIONS * 2)).toMatch(/^partitions/);
    const { members: _members, ...noMembers } = good;
    expect(topologyProblem(noMembers, PARTITIONS)).toMatch(/^members/);

    const l = lease('n1', 'a', { '3': 2 });
    expect(leaseProblem(l, 'n1')).toBeNull();
    expect(leaseProblem(l, 'n2')).toMatch(/under the key/);
    expect(leaseProblem({ ...l, port: '1' }, 'n1')).not.toBeNull();
    expect(leaseProblem({ ...l, synced: { '3': 'x' } }, 'n1')).not.toBeNull();
  });
});

describe('records of a newer release (ADR 0060: fields are only ever added)', () => {
  /** A JSON value a later release might add as a field. */
  const extra = fc.dictionary(
    fc.string({ minLength: 1, maxLength: 8 }).map((k) => `x_${k}`),
    fc.jsonValue({ maxDepth: 2 }),
    { minKeys: 1, maxKeys: 3 },
  );

  it('a topology record with fields this release does not know, at the top and in its members and addresses, is readable', () => {
    fc.assert(
      fc.property(runs, extra, extra, (records, top, inner) => {
        for (const r of records) {
          const wider = JSON.parse(JSON.stringify(r)) as Record<string, unknown> & TopologyRecord;
          Object.assign(wider, top);
          for (const m of Object.values(wider.members)) Object.assign(m, inner);
          for (const a of Object.values(wider.addresses)) Object.assign(a, inner);
          expect(topologyProblem(wider, PARTITIONS)).toBeNull();
        }
      }),
      { numRuns: 60 },
    );
  });

  it('so is a lease record with such fields', () => {
    fc.assert(
      fc.property(extra, (more) => {
        expect(leaseProblem({ ...lease('n1', 'e1', { '3': 7 }, true), ...more }, 'n1')).toBeNull();
      }),
    );
  });
});

describe('a cluster reading a topology a newer release wrote', () => {
  const grid = perTestCluster();

  it('applies it, keeps serving, writes it again with the fields it knows, and goes on from there', async () => {
    const cluster = await grid.start({ nodes: 3, backups: 1, partitions: PARTITIONS });
    const client = await grid.connectFast(cluster.endpoints);
    const cache = client.cache<string, number>('c');
    for (let i = 0; i < 50; i++) await cache.put(`k${i}`, i);
    const cur = cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)!;
    // What a coordinator of a later release could write: the same topology with a field more.
    const newer = { ...cur.value, version: cur.value.version + 1, placementHints: { zones: ['a', 'b'] } };
    await cluster.controlPlane.update(TOPOLOGY_KEY, newer, cur.revision);
    await until(() => cluster.nodeIds.every((id) => cluster.node(id).topology()?.version === newer.version), 'every node to apply the newer record');
    for (let i = 0; i < 50; i++) expect(await cache.get(`k${i}`)).toBe(i);
    // This release's coordinator writes the fields it knows: the same topology, without the
    // newer one's field, one version on (a later release must do without its added fields).
    await until(() => !('placementHints' in cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)!.value), 'the record written again');
    const rewritten = cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)!.value;
    expect(rewritten).toEqual({ ...cur.value, version: newer.version + 1 });

    // The next change is computed from it.
    await cluster.kill(cluster.nodeIds[2]!);
    await until(() => !(cluster.nodeIds[2]! in (cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)?.value.members ?? {})), 'the killed node to leave the topology');
    expect(cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)!.value.version).toBeGreaterThan(newer.version);
    for (let i = 0; i < 50; i++) expect(await cache.get(`k${i}`)).toBe(i);
  });
});

describe('a cluster whose control plane holds garbage', () => {
  const grid = perTestCluster();

  it('keeps serving through a malformed topology and lease record, writes the topology again, and fails over', async () => {
    const cluster = await grid.start({ nodes: 3, backups: 1, partitions: PARTITIONS });
    const client = await grid.connectFast(cluster.endpoints);
    const cache = client.cache<string, number>('c');
    for (let i = 0; i < 50; i++) await cache.put(`k${i}`, i);
    const before = cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)!.value;

    // Garbage over the topology record, one live node's lease and the cache's config.
    await cluster.controlPlane.put(TOPOLOGY_KEY, { hello: 'world' });
    await cluster.controlPlane.put(`${LEASE_PREFIX}${cluster.nodeIds[1]!}`, 'not a lease');
    await cluster.controlPlane.put(`${CACHE_PREFIX}c`, { backups: 'many' });
    for (let i = 0; i < 50; i++) expect(await cache.get(`k${i}`)).toBe(i);
    for (let i = 0; i < 50; i++) await cache.put(`k${i}`, i + 1);

    // The coordinator writes the last good record again, one version on; the node whose lease
    // was overwritten renews it and stays a member under its epoch.
    await until(() => topologyProblem(cluster.controlPlane.peek(TOPOLOGY_KEY)?.value, PARTITIONS) === null, 'a readable topology record again');
    const repaired = cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)!.value;
    expect(repaired.version).toBeGreaterThan(before.version);
    expect(repaired.members).toEqual(before.members);

    // And it moves on from there: a node dies, its partitions fail over, nothing is lost.
    await cluster.kill(cluster.nodeIds[2]!);
    await until(() => !(cluster.nodeIds[2]! in (cluster.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)?.value.members ?? {})), 'the killed node to leave the topology');
    for (let i = 0; i < 50; i++) expect(await cache.get(`k${i}`)).toBe(i + 1);
  });
});

describe('a NATS bucket holding a value that is not JSON', () => {
  const open: { close(): Promise<void> | void }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });

  it('over the topology: the nodes keep serving and write the last good record over it', async () => {
    const nats = await NatsCluster.start({ servers: 1 });
    open.push(nats);
    const planes = await Promise.all(['a', 'b'].map(() => NatsControlPlane.connect({ servers: nats.urls, bucket: 'bytes', connectTimeoutMs: 20_000 })));
    open.push(...planes.map((p) => ({ close: () => p.close() })));
    const nodes: GridNode[] = await Promise.all(
      ['a', 'b'].map((id, i) => startNode({ id, controlPlane: planes[i]!, port: 0, partitions: PARTITIONS, backups: 1, bootstrapNodes: 2, logger: silentLogger })),
    );
    open.push(...nodes.map((n) => ({ close: () => n.stop() })));
    const client = await GridClient.connect({ endpoints: nodes.map((n) => `127.0.0.1:${n.port}`) });
    open.push(client);
    const cache = client.cache<string, number>('c');
    for (let i = 0; i < 20; i++) await cache.put(`k${i}`, i);
    const good = await planes[0]!.get<TopologyRecord>(TOPOLOGY_KEY);

    // Raw bytes straight into the bucket, as another tool could write them: the nodes' watches
    // deliver them as unreadable, and the coordinator writes the last good record over them.
    const kv = await new Kvm(planes[0]!.connection).open('bytes');
    await kv.put(TOPOLOGY_KEY, new TextEncoder().encode('\u0000 not json'));
    for (let i = 0; i < 20; i++) expect(await cache.get(`k${i}`)).toBe(i);

    const deadline = Date.now() + 10_000;
    let repaired: TopologyRecord | undefined;
    while (Date.now() < deadline) {
      const e = await planes[1]!.get<TopologyRecord>(TOPOLOGY_KEY).catch(() => null);
      if (e && topologyProblem(e.value, PARTITIONS) === null && e.revision > good!.revision) {
        repaired = e.value;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(repaired, 'a readable topology record written over the bytes').toBeDefined();
    expect(repaired!.version).toBe(good!.value.version + 1);
    expect(repaired!.members).toEqual(good!.value.members);
    for (let i = 0; i < 20; i++) await cache.put(`k${i}`, i + 1);
  });
});
