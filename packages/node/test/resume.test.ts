import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { Op, ResponseFlag, type ErrorPayload } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestClusterClient, TestConnection } from './helpers/client.js';

const P = 32;
const enc = new TextEncoder();

/** One key per partition: keys[p] hashes to partition p. */
function keyPerPartition(): Uint8Array[] {
  const keys: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(P).fill(undefined);
  for (let i = 0, found = 0; found < P; i++) {
    const k = encodeKey(`k-${i}`);
    const p = partitionOfBytes(k, P);
    if (keys[p] === undefined) {
      keys[p] = k;
      found++;
    }
  }
  return keys as Uint8Array[];
}

let cluster: LocalCluster | undefined;
const conns: { close(): void }[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

describe('a resumed node is ready when waitForStable says so', () => {
  it('hang → lock ops elsewhere → resume → waitForStable: every node answers for its partitions at once, without NOT_PRIMARY', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const keys = keyPerPartition();
    const client = new TestClusterClient(() => c.endpoints);
    conns.push(client);
    for (let p = 0; p < P; p++) await client.call(Op.CACHE_PUT, { cache: 'c', key: keys[p], value: enc.encode(`v${p}`), seq: client.nextSeq() });

    const victim = c.primaryOf(0)!;
    const others = c.nodeIds.filter((id) => id !== victim);
    c.hang(victim);
    // Two lock operations on a partition the victim was primary of, through another node: they
    // succeed once the victim has been declared gone and its backup promoted.
    const lockClient = new TestClusterClient(() => [c.endpointOf(others[0]!)]);
    conns.push(lockClient);
    const acquired = await lockClient.call<{ acquired: boolean; token: number }>(Op.LOCK_TRY_ACQUIRE, { name: keys[0], leaseMs: 5000, seq: lockClient.nextSeq() });
    expect(acquired.acquired).toBe(true);
    await lockClient.call(Op.LOCK_RELEASE, { name: keys[0], token: acquired.token, seq: lockClient.nextSeq() });
    expect(c.topology().members[victim]).toBeUndefined();

    c.resume(victim);
    const t = await c.waitForStable();
    const mine = t.owners.flatMap((o, p) => (o[0] === victim ? [p] : []));
    expect(mine.length).toBeGreaterThan(0);

    // Straight after waitForStable: the resumed node serves its partitions itself, and every
    // other node forwards to it; no attempt is answered with an error.
    const failures: string[] = [];
    for (const id of c.nodeIds) {
      const conn = await TestConnection.connect(c.endpointOf(id));
      conns.push(conn);
      const replies = await Promise.all(mine.map((p) => conn.request(Op.CACHE_GET, { cache: 'c', key: keys[p] })));
      replies.forEach((f, i) => {
        if ((f.flags & ResponseFlag.ERROR) !== 0) failures.push(`${id} p${mine[i]}: ${(f.payload as ErrorPayload).code} ${(f.payload as ErrorPayload).message}`);
        else expect(new TextDecoder().decode((f.payload as { value: Uint8Array }).value)).toBe(`v${mine[i]}`);
      });
    }
    expect(failures).toEqual([]);
    // Writes too, straight to the resumed node.
    const direct = await TestConnection.connect(c.endpointOf(victim));
    conns.push(direct);
    const w = await direct.request(Op.CACHE_PUT, { cache: 'c', key: keys[mine[0]!], value: enc.encode('after'), seq: 1 });
    expect(w.flags & ResponseFlag.ERROR).toBe(0);
  });
});

describe('a forward abandoned because the primary changed', () => {
  it('is routed again on the new topology instead of answering NOT_PRIMARY', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const keys = keyPerPartition();
    const p = 0;
    const primary = c.primaryOf(p)!;
    const via = c.nodeIds.find((id) => id !== primary)!;
    const conn = await TestConnection.connect(c.endpointOf(via));
    conns.push(conn);
    const put = await conn.request(Op.CACHE_PUT, { cache: 'c', key: keys[p], value: enc.encode('before'), seq: 1 });
    expect(put.flags & ResponseFlag.ERROR).toBe(0);
    // The primary freezes: `via` forwards to it and waits until the cluster declares it gone
    // and promotes the backup; then the request must be answered from the new primary.
    c.hang(primary);
    const reply = await conn.request(Op.CACHE_PUT, { cache: 'c', key: keys[p], value: enc.encode('after'), seq: 2 }, 0, 10_000);
    expect(reply.flags & ResponseFlag.ERROR, JSON.stringify(reply.payload)).toBe(0);
    expect(c.primaryOf(p)).not.toBe(primary);
    const get = await conn.request(Op.CACHE_GET, { cache: 'c', key: keys[p] });
    expect(new TextDecoder().decode((get.payload as { value: Uint8Array }).value)).toBe('after');
  });
});
