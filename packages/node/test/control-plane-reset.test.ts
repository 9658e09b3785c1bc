/**
 * ADR 0028: a NATS bucket that disappears or is created anew (NATS lost its JetStream store, or
 * someone deleted the bucket) takes every record a node's view came from with it. The plane says
 * so once and refuses everything after; a node on it stops at once instead of serving on an old
 * view beside a new cluster formed on the new bucket (split brain).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { silentLogger, startNode, type GridNode } from '@gridlink/node';
import { NatsCluster, waitFor } from '@gridlink/testkit';
import { ControlPlaneResetError, NatsControlPlane, readStreamInfo } from '../src/control/nats.js';

let nats: NatsCluster;
let nc: NatsConnection;
const planes: NatsControlPlane[] = [];
const nodes: GridNode[] = [];
let seq = 0;

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

async function plane(bucket: string): Promise<NatsControlPlane> {
  const p = await NatsControlPlane.connect({ servers: nats.urls, bucket, connectTimeoutMs: 20_000 });
  planes.push(p);
  return p;
}

async function destroyBucket(bucket: string): Promise<void> {
  await (await new Kvm(nc).open(bucket)).destroy();
}

describe('a control plane whose bucket is lost', () => {
  it('a bucket created anew: reset is reported once, and every operation after it refused', async () => {
    const bucket = `reset${++seq}`;
    const p = await plane(bucket);
    await p.put('k', { v: 1 });
    const resets: Error[] = [];
    p.onReset((err) => resets.push(err));
    // Known from the moment the plane opened the bucket.
    expect((p as unknown as { streamCreated?: string }).streamCreated).toBeDefined();
    await destroyBucket(bucket);
    await new Kvm(nc).create(bucket);
    await waitFor('the reset to be reported', () => resets.length > 0, 10_000);
    expect(resets).toHaveLength(1);
    expect(resets[0]).toBeInstanceOf(ControlPlaneResetError);
    expect(resets[0]!.message).toMatch(/created anew/);
    expect(p.reset).toMatch(/created anew/);
    await expect(p.put('k', { v: 2 })).rejects.toBeInstanceOf(ControlPlaneResetError);
    await expect(p.get('k')).rejects.toBeInstanceOf(ControlPlaneResetError);
    // Nothing of the new bucket is delivered to a watch asked for afterwards.
    const events: unknown[] = [];
    p.watch('k', (e) => events.push(e));
    // A listener that subscribes late still hears of it.
    const late: Error[] = [];
    p.onReset((err) => late.push(err));
    await waitFor('the late listener', () => late.length === 1, 1000);
    expect(events).toEqual([]);
  });

  it('a bucket deleted for good: reported once JetStream says five times in a row that it does not exist', async () => {
    const bucket = `reset${++seq}`;
    const p = await plane(bucket);
    const resets: Error[] = [];
    p.onReset((err) => resets.push(err));
    await destroyBucket(bucket);
    await waitFor('the reset to be reported', () => resets.length > 0, 10_000);
    expect(resets[0]!.message).toMatch(/no longer exists/);
  });

  it('a healthy bucket is never reported reset', async () => {
    const bucket = `reset${++seq}`;
    const p = await plane(bucket);
    const resets: Error[] = [];
    p.onReset((err) => resets.push(err));
    const writes = Array.from({ length: 30 }, (_, i) => p.put(`k${i % 3}`, { i }));
    await Promise.all(writes);
    // Three stream checks (one a second) after the writes.
    const checked = Date.now();
    await waitFor('three more stream checks', () => (p as unknown as { lastStatusAt: number }).lastStatusAt >= checked + 2000, 10_000);
    expect(resets).toEqual([]);
    expect(p.reset).toBeUndefined();
  });

  it('grid nodes on it stop at once instead of serving beside a cluster formed on the new bucket', async () => {
    const bucket = `reset${++seq}`;
    const started = await Promise.all(
      ['a', 'b'].map(async (id) =>
        startNode({ id, controlPlane: await plane(bucket), port: 0, partitions: 8, backups: 1, bootstrapNodes: 2, logger: silentLogger }),
      ),
    );
    nodes.push(...started);
    await waitFor('two serving members', () => started.every((n) => n.isServing() && Object.keys(n.topology()?.members ?? {}).length === 2), 20_000);
    await destroyBucket(bucket);
    await new Kvm(nc).create(bucket);
    await waitFor('both nodes to stop', () => started.every((n) => !n.running), 10_000);
    // A node started on the new bucket forms a new cluster on its own; the old ones serve nothing.
    const fresh = await startNode({ id: 'c', controlPlane: await plane(bucket), port: 0, partitions: 8, backups: 1, logger: silentLogger });
    nodes.push(fresh);
    await waitFor('the new cluster to serve', () => fresh.isServing(), 20_000);
    expect(Object.keys(fresh.topology()!.members)).toEqual(['c']);
    expect(started.every((n) => !n.running && !n.isServing())).toBe(true);
  });
});

describe('which stream the bucket is: the STREAM.INFO reply', () => {
  const reply = (body: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(body));

  it('a real server describes the stream the plane noted when it opened the bucket', async () => {
    const bucket = `reset${++seq}`;
    const p = await plane(bucket);
    const m = await nc.request(`$JS.API.STREAM.INFO.KV_${bucket}`, '');
    const info = readStreamInfo(bucket, m.data);
    expect(info).not.toBe('missing');
    expect(info !== 'missing' && info.created).toBe((p as unknown as { streamCreated?: string }).streamCreated);
  });

  it('a reply without the creation time says nothing (throws, as a timeout does); it is never a stream created at "undefined"', () => {
    // A check that throws judges nothing: neither a reset (another creation time than the one
    // noted) nor, at connect, the creation time a later check would be compared with.
    for (const body of [{ state: { last_seq: 5 } }, { created: '', state: { last_seq: 5 } }, { created: null }, { created: 1700000000 }]) {
      expect(() => readStreamInfo('b', reply(body))).toThrow('JetStream described stream KV_b without its creation time');
    }
    expect(readStreamInfo('b', reply({ created: '2024-05-01T10:00:00.123456789Z', state: { last_seq: 5 } }))).toEqual({ created: '2024-05-01T10:00:00.123456789Z', lastSeq: 5 });
    expect(readStreamInfo('b', reply({ error: { code: 404, err_code: 10059, description: 'stream not found' } }))).toBe('missing');
    expect(() => readStreamInfo('b', reply({ error: { code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' } }))).toThrow('temporarily unavailable');
  });
});
