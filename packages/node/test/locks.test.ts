import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { LockNotHeldError, LockTimeoutError, type GridClient } from '@gridlink/client';
import { Op, type LockResult } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestConnection } from './helpers/client.js';
import { connectClient } from './helpers/grid.js';

const P = 16;

describe('locks', () => {
  let cluster: LocalCluster | undefined;
  let clients: GridClient[] = [];
  let raws: TestConnection[] = [];
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    for (const r of raws) r.close();
    raws = [];
    await cluster?.stop();
    cluster = undefined;
  });

  /** One client (one session) with short failure detection, as the tests kill primaries. */
  async function client(c: LocalCluster): Promise<GridClient> {
    const cl = await connectClient(c.endpoints);
    clients.push(cl);
    return cl;
  }

  it('fencing tokens strictly increase across failover; a dead holder frees the lock at lease end', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const a = await client(c);
    const b = await client(c);
    const tokens: number[] = [];
    // A few acquire/release rounds before the failover.
    for (let i = 0; i < 3; i++) {
      const h = await a.lock('job-lock').tryAcquire({ leaseMs: 5000 });
      expect(h).not.toBeNull();
      tokens.push(h!.fencingToken);
      await h!.release(); // throws LockNotHeldError unless the node reports it released
    }
    // A holds it with a short lease, then "dies" (stops renewing); the primary is killed too.
    const held = await a.lock('job-lock').tryAcquire({ leaseMs: 1500 });
    expect(held).not.toBeNull();
    tokens.push(held!.fencingToken);
    const heldAt = Date.now();
    const primary = c.primaryOf(partitionOf('job-lock', P))!;
    await c.kill(primary);
    // The lock survived the failover: B cannot take it while A's lease runs...
    const blocked = await b.lock('job-lock').tryAcquire({ leaseMs: 5000 });
    if (Date.now() - heldAt < 1400) expect(blocked).toBeNull();
    // ...and gets it by waiting once the lease ends.
    const got = await b.lock('job-lock').acquire({ leaseMs: 5000, waitMs: 5000 });
    // Not before A's lease ran out (it started before heldAt, so allow for the round trip).
    expect(Date.now() - heldAt).toBeGreaterThanOrEqual(1000);
    tokens.push(got.fencingToken);
    // A's stale token no longer works.
    await expect(held!.release()).rejects.toBeInstanceOf(LockNotHeldError);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
  });

  it('never two holders at once among contending sessions, across a primary kill', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    let holder: string | null = null;
    let overlaps = 0;
    let acquisitions = 0;
    const tokens: number[] = [];
    const stopAt = { done: false };
    const sessions = await Promise.all([0, 1, 2, 3].map(() => client(c)));
    const worker = async (idx: number): Promise<void> => {
      const cl = sessions[idx]!;
      while (!stopAt.done) {
        let h;
        try {
          h = await cl.lock('mutex').acquire({ leaseMs: 10_000, waitMs: 300 });
        } catch (err) {
          if (err instanceof LockTimeoutError) continue;
          throw err;
        }
        if (holder !== null) overlaps++;
        holder = `w${idx}`;
        acquisitions++;
        tokens.push(h.fencingToken);
        await new Promise((res) => setImmediate(res));
        holder = null;
        await h.release(); // throws LockNotHeldError unless the node reports it released
      }
    };
    const workers = [0, 1, 2, 3].map((i) => worker(i));
    const waitFor = async (n: number): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (acquisitions < n) {
        if (Date.now() > deadline) throw new Error(`only ${acquisitions} acquisitions`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitFor(20);
    await c.kill(c.primaryOf(partitionOf('mutex', P))!);
    const before = acquisitions;
    await waitFor(before + 20);
    stopAt.done = true;
    await Promise.all(workers);
    expect(overlaps).toBe(0);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
  });

  it('tryAcquire never blocks; acquire gives up after waitMs', async () => {
    const c = await LocalCluster.start({ nodes: 2, backups: 1, partitions: P });
    cluster = c;
    const a = await client(c);
    const b = await client(c);
    expect(await a.lock('busy').tryAcquire({ leaseMs: 10_000 })).not.toBeNull();
    expect(await b.lock('busy').tryAcquire({ leaseMs: 10_000 })).toBeNull();
    // The client hides how long the lock has been held; the node reports it on the wire.
    const raw = await TestConnection.connect(c.endpoints[0]!);
    raws.push(raw);
    const r = await raw.call<LockResult>(Op.LOCK_TRY_ACQUIRE, { name: encodeKey('busy'), leaseMs: 10_000, seq: 1 });
    expect(r.acquired).toBe(false);
    expect(r.heldForMs).toBeGreaterThan(0);
    const t0 = Date.now();
    await expect(b.lock('busy').acquire({ leaseMs: 10_000, waitMs: 200 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
  });
});
