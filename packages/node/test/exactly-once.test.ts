import { afterEach, describe, expect, it } from 'vitest';
import { decode } from '@msgpack/msgpack';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestClusterClient } from './helpers/client.js';

const P = 16;

describe('exactly-once mutations', () => {
  let cluster: LocalCluster | undefined;
  const clients: TestClusterClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await cluster?.stop();
    cluster = undefined;
  });

  it('an increment retried with the same (session, seq) after its primary was killed applies once', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const cl = new TestClusterClient(() => c.endpoints);
    clients.push(cl);
    const key = encodeKey('counter');
    const primary = c.primaryOf(partitionOf('counter', P))!;
    // Send through a node that is NOT the primary, so the request is forwarded with our session.
    const via = c.nodeIds.find((id) => id !== primary)!;
    const seq = cl.nextSeq();
    const first = await cl.once<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key, delta: 7, seq }, 3000, c.endpointOf(via));
    expect(first.value).toBe(7);
    await c.kill(primary);
    // The retry (same session, same seq) lands on the promoted backup and returns the first outcome.
    const retry = await cl.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key, delta: 7, seq });
    expect(retry.value).toBe(7);
    const got = await cl.call<{ value: Uint8Array }>(Op.CACHE_GET, { cache: 'n', key });
    expect(decode(got.value)).toBe(7);
    // A new seq applies again.
    const next = await cl.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key, delta: 1, seq: cl.nextSeq() });
    expect(next.value).toBe(8);
  });
});
