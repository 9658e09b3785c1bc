/**
 * Real processes: three nats-servers (JetStream cluster, R3 bucket) and three `gridlink-node`
 * processes, on a cluster of its own (a NATS cluster that has just had a server restarted or hung
 * can stay without a quorum for over a minute when its stream leader is killed: a fresh one
 * elects in 4.5-8 s). A lock is held; the KV stream leader and the node that is the lock's
 * primary are killed together. No backup can be promoted before a new stream leader is elected,
 * longer than the lock's lease; the promoted backup does not count that time (ADR 0072), so the
 * holder's release, retried by its client all along, succeeds, and the next holder's fencing
 * token is larger. Before ADR 0072 the release was refused with LockNotHeldError.
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { processClusterFixture, streamLeader } from './helpers/load.js';

const fx = processClusterFixture({ nodes: 3, natsServers: 3, partitions: 64 });

describe('a held lock through a kill of the KV stream leader and of its primary (ADR 0072)', () => {
  it('the holder releases it after the failover although the lease would have ended; the next holder gets a larger token', async () => {
    const topo = (await fx.cluster.topology())!;
    let name = '';
    for (let i = 0; name === '' && i < 10_000; i++) {
      if (topo.owners[partitionOfBytes(encodeKey(`held-${i}`), topo.partitions)]![0] === 'node-3') name = `held-${i}`;
    }
    const LEASE_MS = 3000;
    const h = await fx.client.lock(name).tryAcquire({ leaseMs: LEASE_MS });
    expect(h).not.toBeNull();
    const server = await streamLeader(fx.cluster);
    const t0 = Date.now();
    await Promise.all([server.kill(), fx.cluster.node('node-3').kill()]);
    const outcome = await h!.release().then(
      () => 'released',
      (err: unknown) => (err instanceof Error ? `${err.name}: ${err.message}` : String(err)),
    );
    const tookMs = Date.now() - t0;
    expect(outcome).toBe('released');
    // The scenario happened: the release could land only after the lease would have ended.
    expect(tookMs).toBeGreaterThan(LEASE_MS);
    const next = await fx.client.lock(name).tryAcquire({ leaseMs: LEASE_MS });
    expect(next?.fencingToken).toBeGreaterThan(h!.fencingToken);
    await next!.release();
    console.log(`lock released ${tookMs} ms after the stream leader and the lock's primary were killed (lease ${LEASE_MS} ms)`);
  }, 60_000);
});
