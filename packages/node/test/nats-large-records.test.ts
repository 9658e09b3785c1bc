/**
 * ADR 0050: a record too big for one NATS message (the topology of tens of thousands of
 * partitions) is stored gzipped, and only then: smaller records stay the plain JSON every earlier
 * version wrote. Real nats-server (max_payload 1 MiB).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { silentLogger, startNode, type GridNode, type KvEvent } from '@gridlink/node';
import { GridClient } from '@gridlink/client';
import { NatsCluster, waitFor } from '@gridlink/testkit';
import { NatsControlPlane, decodeValue } from '../src/control/nats.js';

let nats: NatsCluster;
const planes: NatsControlPlane[] = [];
const nodes: GridNode[] = [];

beforeAll(async () => {
  nats = await NatsCluster.start({ servers: 1 });
});

afterAll(async () => {
  for (const n of nodes) n.kill();
  await Promise.all(planes.map((p) => p.close()));
  await nats?.close();
});

async function plane(bucket: string): Promise<NatsControlPlane> {
  const p = await NatsControlPlane.connect({ servers: nats.urls, bucket, connectTimeoutMs: 20_000 });
  planes.push(p);
  return p;
}

/** The bytes NATS holds for `key`, read past the plane. */
async function rawBytes(p: NatsControlPlane, bucket: string, key: string): Promise<Uint8Array> {
  const e = await (await new Kvm(p.connection).open(bucket)).get(key);
  return e!.value;
}

describe('records bigger than a NATS message', () => {
  it('a 2 MB record round-trips gzipped through put, update, get, list and watch; a small one stays plain JSON', async () => {
    const p = await plane('big');
    const q = await plane('big');
    const big = { owners: Array.from({ length: 60_000 }, (_, i) => [`gridlink-${i % 7}`, `gridlink-${(i + 1) % 7}`]) };
    expect(JSON.stringify(big).length).toBeGreaterThan(1024 * 1024);
    const events: KvEvent<unknown>[] = [];
    q.watch('rec.', (e) => events.push(e));
    // A watch sees what is written once it is established; list() waits for that (contract).
    expect(await q.list('rec.')).toEqual([]);
    const r1 = await p.put('rec.big', big);
    expect((await q.get('rec.big'))!.value).toEqual(big);
    const raw = await rawBytes(p, 'big', 'rec.big');
    expect([raw[0], raw[1]]).toEqual([0x1f, 0x8b]);
    expect(raw.length).toBeLessThan(1024 * 1024);
    const bigger = { ...big, version: 2 };
    await p.update('rec.big', bigger, r1);
    expect((await q.list<typeof bigger>('rec.')).map((e) => e.value.version)).toEqual([2]);
    await p.put('rec.small', { v: 1 });
    expect(new TextDecoder().decode(await rawBytes(p, 'big', 'rec.small'))).toBe('{"v":1}');
    await waitFor('three watch events', () => events.length === 3, 10_000);
    expect(events.map((e) => (e.type === 'put' ? e.value : null))).toEqual([big, bigger, { v: 1 }]);
  });

  it('decodeValue reads JSON and gzipped JSON, and refuses anything else', () => {
    expect(decodeValue(new TextEncoder().encode('{"a":[1]}'))).toEqual({ a: [1] });
    expect(() => decodeValue(new TextEncoder().encode('not json'))).toThrow();
    expect(() => decodeValue(new Uint8Array([0x1f, 0x8b, 0, 1, 2]))).toThrow();
  });

  it('two nodes of 65536 partitions form a cluster and serve (their topology is over 1 MB as JSON)', async () => {
    const started = await Promise.all(
      ['gridlink-node-0', 'gridlink-node-1'].map(async (id) => startNode({ id, controlPlane: await plane('wide'), port: 0, partitions: 65_536, backups: 1, bootstrapNodes: 2, logger: silentLogger })),
    );
    nodes.push(...started);
    await waitFor('two serving members', () => started.every((n) => n.isServing() && Object.keys(n.topology()?.members ?? {}).length === 2), 30_000);
    expect(JSON.stringify(started[0]!.topology()).length).toBeGreaterThan(1024 * 1024);
    const client = await GridClient.connect({ endpoints: started.map((n) => `127.0.0.1:${n.port}`) });
    try {
      const cache = client.cache<string, number>('wide');
      for (let i = 0; i < 50; i++) await cache.put(`k${i}`, i);
      for (let i = 0; i < 50; i++) expect(await cache.get(`k${i}`)).toBe(i);
    } finally {
      await client.close();
    }
  }, 60_000);
});
