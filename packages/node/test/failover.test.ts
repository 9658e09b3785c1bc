import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { GridClient, bytesSerializer, type GridCache } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { Op } from '@gridlink/protocol';
import { TestClusterClient } from './helpers/client.js';
import { WriteStream, type ReadFn } from './helpers/workload.js';

const P = 32;
const CACHE = 'ws';

/** Short failure detection so a killed or hung node is left quickly; a long deadline per write. */
async function connect(endpoints: string[]): Promise<GridClient> {
  return GridClient.connect({
    endpoints,
    heartbeatInterval: 100,
    heartbeatTimeout: 600,
    requestTimeout: 400,
    operationTimeout: 20_000,
    reconnect: { minDelay: 20, maxDelay: 300 },
  });
}

function cacheOf(client: GridClient): GridCache<string, Uint8Array> {
  return client.cache<string, Uint8Array>(CACHE, { serializer: bytesSerializer });
}

/** Reads through one node only (the real client would route to the primary). */
function readThrough(raw: TestClusterClient): ReadFn {
  return async (key) =>
    (await raw.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache: CACHE, key: encodeKey(key) })).value;
}

/** Keys spread over partitions, and those whose partition `node` is primary of. */
function keysFor(cluster: LocalCluster, node: string): { all: string[]; victimKeys: string[] } {
  const all = Array.from({ length: 24 }, (_, i) => `key-${i}`);
  const victimKeys = all.filter((k) => cluster.primaryOf(partitionOf(k, P)) === node);
  return { all, victimKeys };
}

function pickVictim(cluster: LocalCluster): string {
  // The node that is primary of the most of our keys' partitions.
  const all = Array.from({ length: 24 }, (_, i) => `key-${i}`);
  const counts = new Map<string, number>();
  for (const k of all) {
    const p = cluster.primaryOf(partitionOf(k, P))!;
    counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1])[0]![0];
}

describe('failover of a primary during a stream of acknowledged writes (backups = 1)', () => {
  let cluster: LocalCluster | undefined;
  let clients: GridClient[] = [];
  let raws: TestClusterClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    for (const c of raws) c.close();
    raws = [];
    await cluster?.stop();
    cluster = undefined;
  });

  async function client(endpoints: string[]): Promise<GridCache<string, Uint8Array>> {
    const cl = await connect(endpoints);
    clients.push(cl);
    return cacheOf(cl);
  }

  async function setup(): Promise<{ c: LocalCluster; reader: GridCache<string, Uint8Array>; victim: string; stream: WriteStream; victimKeys: string[] }> {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const writer = await client(c.endpoints);
    const reader = await client(c.endpoints);
    const victim = pickVictim(c);
    const { all, victimKeys } = keysFor(c, victim);
    expect(victimKeys.length).toBeGreaterThan(0);
    const stream = new WriteStream(writer, all);
    await stream.waitForAcks(victimKeys, 0, 20);
    return { c, reader, victim, stream, victimKeys };
  }

  it('kill: every acknowledged write is readable and writes resume', async () => {
    const { c, reader, victim, stream, victimKeys } = await setup();
    const t0 = Date.now();
    await c.kill(victim);
    await c.waitForTopology((t) => t.members[victim] === undefined);
    await stream.waitForAcks(victimKeys, t0, 10);
    await stream.stop();
    expect(stream.failures).toEqual([]);
    await stream.verify(reader);
  });

  it('hang: writes resume once its lease expires; after resume it serves nothing stale', async () => {
    const { c, reader, victim, stream, victimKeys } = await setup();
    const oldEpoch = c.node(victim).epoch;
    const t0 = Date.now();
    c.hang(victim);
    await c.waitForTopology((t) => t.members[victim] === undefined);
    await stream.waitForAcks(victimKeys, t0, 10);
    c.resume(victim);
    // It learns it was declared gone, rejoins under a new epoch and pulls its partitions again.
    await c.waitForStable();
    expect(c.node(victim).epoch).not.toBe(oldEpoch);
    await stream.waitForAcks(victimKeys, Date.now(), 10);
    await stream.stop();
    expect(stream.failures).toEqual([]);
    await stream.verify(reader);
    // Reads through the resumed node see the latest acknowledged values too. The real client
    // picks the node itself, so this read is pinned with the protocol-level test client.
    const direct = new TestClusterClient(() => [c.endpointOf(victim)]);
    raws.push(direct);
    await stream.verify(readThrough(direct));
  });

  it('restart: it rejoins empty, receives its partitions by state transfer and serves them', async () => {
    const { c, reader, victim, stream, victimKeys } = await setup();
    const t0 = Date.now();
    await c.restart(victim);
    await stream.waitForAcks(victimKeys, t0, 10);
    await c.waitForStable();
    expect(c.node(victim).transfers).toBeGreaterThan(0);
    await stream.waitForAcks(victimKeys, Date.now(), 10);
    await stream.stop();
    expect(stream.failures).toEqual([]);
    await stream.verify(reader);
    // Kill every other node that shares partitions with the restarted one, one at a time,
    // so the restarted node must answer from what it received.
    const others = c.nodeIds.filter((id) => id !== victim);
    await c.kill(others[0]!);
    await c.waitForTopology((t) => t.members[others[0]!] === undefined && t.lost.length === 0);
    await stream.verify(reader);
  });

  it('a hung backup delays writes only until its lease expires, then they are acknowledged without it', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const key = 'key-0';
    const p = partitionOf(key, P);
    const [primary, backup] = c.topology().owners[p] as [string, string];
    // The key's requests go to its primary, so the client never waits on the frozen node itself.
    const cl = await client([c.endpointOf(primary)]);
    const stream = new WriteStream(cl, [key]);
    await stream.waitForAcks([key], 0, 5);
    c.hang(backup);
    const t0 = Date.now();
    await stream.waitForAcks([key], t0 + 50, 5);
    // The first write acknowledged after the hang came only once the backup was dropped.
    expect(c.topology().members[backup]).toBeUndefined();
    await stream.stop();
    expect(stream.failures).toEqual([]);
    c.resume(backup);
    await c.waitForStable();
    await stream.verify(cl);
  });

  it('a node that learns it was declared gone says which topology version dropped which epoch of it', async () => {
    const said: { msg: string; fields: Record<string, unknown> | undefined }[] = [];
    const at = (msg: string, fields?: Record<string, unknown>): void => void said.push({ msg, fields });
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false }, logger: { debug: at, info: at, warn: at, error: at } });
    cluster = c;
    const victim = c.nodeIds[2]!;
    const oldEpoch = c.node(victim).epoch;
    c.hang(victim);
    const dropped = await c.waitForTopology((t) => t.members[victim] === undefined);
    c.resume(victim);
    await c.waitForStable();
    const line = said.find((s) => s.msg === 'declared gone by the cluster; rejoining empty' && s.fields?.['id'] === victim);
    expect(line?.fields).toMatchObject({ epoch: oldEpoch, leaseValid: false });
    expect(line!.fields!['topologyVersion']).toBeGreaterThanOrEqual(dropped.version);
  });

  it('the coordinator hanging: the next node takes over coordinating, and the returning one does not disturb it', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const coordinator = [...c.nodeIds].sort()[0]!;
    const v0 = c.topologyVersion;
    c.hang(coordinator);
    // Only another coordinator can write this: the hung one is frozen.
    await c.waitForTopology((t) => t.members[coordinator] === undefined && t.version > v0);
    const cl = await client(c.nodeIds.filter((id) => id !== coordinator).map((id) => c.endpointOf(id)));
    const stream = new WriteStream(cl, ['key-1', 'key-2', 'key-3']);
    await stream.waitForAcks(['key-1', 'key-2', 'key-3'], 0, 10);
    c.resume(coordinator);
    await c.waitForStable();
    await stream.waitForAcks(['key-1', 'key-2', 'key-3'], Date.now(), 10);
    await stream.stop();
    expect(stream.failures).toEqual([]);
    await stream.verify(cl);
  });

  it('a backup that misses writes (stalled past the replication timeout, lease still valid) is resynced before anything more is acknowledged', async () => {
    const c = await LocalCluster.start({
      nodes: 3,
      backups: 1,
      partitions: P,
      autoAdjust: { enabled: false },
      replicationTimeoutMs: 250,
      leaseMs: 3000,
      renewIntervalMs: 500,
      leaseMarginMs: 300,
    });
    cluster = c;
    const key = 'key-5';
    const p = partitionOf(key, P);
    const [primary, backup] = c.topology().owners[p] as [string, string];
    const cl = await client([c.endpointOf(primary)]);
    const stream = new WriteStream(cl, [key]);
    await stream.waitForAcks([key], 0, 5);
    // Freeze the backup for less than its lease: writes time out waiting for it and are retried.
    c.hang(backup);
    await new Promise((r) => setTimeout(r, 800)); // the fault's duration, not a synchronisation
    c.resume(backup);
    await stream.waitForAcks([key], Date.now(), 10);
    expect(c.topology().members[backup]).toBeDefined();
    expect(c.node(primary).resyncs).toBeGreaterThan(0);
    await stream.stop();
    expect(stream.failures).toEqual([]);
    // The backup alone must now hold every acknowledged write.
    await c.kill(primary);
    const survivor = new TestClusterClient(() => [c.endpointOf(backup)]);
    raws.push(survivor);
    await stream.verify(readThrough(survivor));
  });
});

