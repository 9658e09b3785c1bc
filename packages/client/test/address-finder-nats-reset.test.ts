/**
 * natsAddressFinder when the control plane's bucket is created anew (NATS lost its store, or the
 * bucket was deleted; ADR 0028, ADR 0054): the grid nodes on the old bucket stop, nodes started
 * again (same ids, new ports, as a StatefulSet's pods) form a new cluster on the new bucket, whose
 * revisions count from 1 again. A client given only the NATS servers must follow: the finder
 * forgets the old announcements and reads the new bucket from scratch. Real nats-server, real
 * grid nodes, real client. Also the reading of JetStream's STREAM.INFO reply that tells one bucket
 * from the other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { GridClient } from '@gridlink/client';
import { natsAddressFinder } from '@gridlink/client/nats';
import { readStreamCreated } from '@gridlink/client/internal';
import { NatsControlPlane, silentLogger, startNode, type GridNode } from '@gridlink/node';
import { NatsCluster } from '@gridlink/testkit';
import { waitFor } from './helpers/wait.js';

let nats: NatsCluster;
let nc: NatsConnection;
const planes: NatsControlPlane[] = [];
const nodes: GridNode[] = [];

beforeAll(async () => {
  nats = await NatsCluster.start({ servers: 1 });
  nc = await connect({ servers: nats.urls });
});

afterAll(async () => {
  for (const n of nodes) n.kill();
  await Promise.all(planes.map((p) => p.close()));
  await nc?.close();
  await nats?.close();
});

async function gridNodes(bucket: string, ids: string[]): Promise<GridNode[]> {
  const started = await Promise.all(
    ids.map(async (id) => {
      const cp = await NatsControlPlane.connect({ servers: nats.urls, bucket, connectTimeoutMs: 20_000, logger: silentLogger });
      planes.push(cp);
      const node = await startNode({ id, controlPlane: cp, port: 0, partitions: 16, backups: 1, bootstrapNodes: ids.length, logger: silentLogger });
      nodes.push(node);
      return node;
    }),
  );
  await waitFor(() => started.every((n) => n.isServing() && Object.keys(n.topology()?.members ?? {}).length === ids.length), 20_000, `nodes ${ids.join(', ')} serving`);
  return started;
}

const endpoints = (ns: GridNode[]): string[] => ns.map((n) => `127.0.0.1:${n.port}`);

describe('natsAddressFinder and a bucket created anew', () => {
  it('a client given only the NATS servers follows the nodes into the new bucket', async () => {
    const bucket = 'finder-reset';
    const old = await gridNodes(bucket, ['a', 'b']);
    // Default staleAfterMs (30 s): the old nodes' announcements stay fresh long after they stop,
    // so only noticing the new bucket drops them.
    const finder = natsAddressFinder({ servers: nats.urls, bucket, checkIntervalMs: 200 });
    try {
      expect(await finder.resolve()).toEqual(endpoints(old));
      const client = await GridClient.connect({ addressFinder: finder, reResolveInterval: 200 });
      const connectedAt = new Map<string, string>();
      client.on('connected', (e) => connectedAt.set(e.nodeId, e.address));
      try {
        const cache = client.cache<string, number>('c');
        await cache.put('k', 1);
        expect(await cache.get('k')).toBe(1);

        // NATS loses the bucket; it is created anew. The old nodes stop (ADR 0028)...
        await (await new Kvm(nc).open(bucket)).destroy();
        await new Kvm(nc).create(bucket, { history: 64 });
        await waitFor(() => old.every((n) => !n.running), 15_000, 'the old nodes to stop');
        // ...and start again under the same ids: a new cluster on the new bucket, revisions from 1.
        const fresh = await gridNodes(bucket, ['a', 'b']);
        const want = endpoints(fresh).sort();

        // In between, the new bucket may announce nobody yet: resolve() rejects, and the client
        // keeps its previous list meanwhile.
        const announces = async (): Promise<string> => (await finder.resolve().catch(() => [] as string[])).sort().join(' ');
        await waitFor(async () => (await announces()) === want.join(' '), 15_000, `the finder to announce ${want.join(', ')} (has ${finder.announced().map((a) => a.endpoint).join(', ')})`);
        expect(finder.resets).toBe(1);
        expect(finder.announced().map((a) => a.id)).toEqual(['a', 'b']);

        // The client reaches the new nodes through the finder alone, and serves again.
        await waitFor(
          () => fresh.every((n) => connectedAt.get(n.id) === `127.0.0.1:${n.port}` && client.stats().nodes.some((s) => s.nodeId === n.id && s.connected)),
          15_000,
          'the client connected to the new nodes',
        );
        await cache.put('k2', 2);
        expect(await cache.get('k2')).toBe(2);
        // The old data went with the old cluster (ADR 0028).
        expect(await cache.get('k')).toBeUndefined();
      } finally {
        await client.close();
      }
    } finally {
      await finder.close();
    }
  });

  it('refuses a bad checkIntervalMs naming the field', () => {
    expect(() => natsAddressFinder({ servers: 'nats://x:1', checkIntervalMs: 0 })).toThrow(/checkIntervalMs/);
  });
});

describe('which stream the bucket is: the STREAM.INFO reply', () => {
  const reply = (body: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(body));

  it("a real server's reply gives the creation time of the bucket's stream", async () => {
    const bucket = 'finder-info';
    const kv = await new Kvm(nc).create(bucket, { history: 64 });
    const m = await nc.request(`$JS.API.STREAM.INFO.KV_${bucket}`, '');
    expect(readStreamCreated(bucket, m.data)).toBe((await kv.status()).streamInfo.created);
    await kv.destroy();
  });

  it('a reply without the creation time says nothing (throws, as a timeout does); it is never a bucket created at "undefined"', () => {
    // A check that throws judges nothing: neither a bucket created anew (another creation time
    // than the one noted) nor, at the start, the creation time a later check is compared with.
    for (const body of [{ state: { last_seq: 5 } }, { created: '', state: { last_seq: 5 } }, { created: null }, { created: 1700000000 }]) {
      expect(() => readStreamCreated('b', reply(body)), JSON.stringify(body)).toThrow('JetStream described stream KV_b without its creation time');
    }
    expect(readStreamCreated('b', reply({ created: '2024-05-01T10:00:00.123456789Z', state: { last_seq: 5 } }))).toBe('2024-05-01T10:00:00.123456789Z');
    expect(readStreamCreated('b', reply({ error: { code: 404, err_code: 10059, description: 'stream not found' } }))).toBeNull();
    expect(() => readStreamCreated('b', reply({ error: { code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' } }))).toThrow('temporarily unavailable');
  });
});
