import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { Op, type LockResult } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestClusterClient } from './helpers/client.js';

const P = 16;

describe('locks', () => {
  let cluster: LocalCluster | undefined;
  let clients: TestClusterClient[] = [];
  afterEach(async () => {
    for (const c of clients) c.close();
    clients = [];
    await cluster?.stop();
    cluster = undefined;
  });

  function client(c: LocalCluster): TestClusterClient {
    const cl = new TestClusterClient(() => c.endpoints);
    clients.push(cl);
    return cl;
  }

  it('fencing tokens strictly increase across failover; a dead holder frees the lock at lease end', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const a = client(c);
    const b = client(c);
    const name = encodeKey('job-lock');
    const tokens: number[] = [];
    // A few acquire/release rounds before the failover.
    for (let i = 0; i < 3; i++) {
      const r = await a.call<LockResult>(Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 5000, seq: a.nextSeq() });
      expect(r.acquired).toBe(true);
      tokens.push(r.token!);
      const rel = await a.call<{ released: boolean }>(Op.LOCK_RELEASE, { name, token: r.token!, seq: a.nextSeq() });
      expect(rel.released).toBe(true);
    }
    // A holds it with a short lease, then "dies" (stops renewing); the primary is killed too.
    const held = await a.call<LockResult>(Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1500, seq: a.nextSeq() });
    expect(held.acquired).toBe(true);
    tokens.push(held.token!);
    const heldAt = Date.now();
    const primary = c.primaryOf(partitionOf('job-lock', P))!;
    await c.kill(primary);
    // The lock survived the failover: B cannot take it while A's lease runs...
    const blocked = await b.call<LockResult>(Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 5000, seq: b.nextSeq() });
    if (Date.now() - heldAt < 1400) expect(blocked.acquired).toBe(false);
    // ...and gets it by waiting once the lease ends.
    const got = await b.call<LockResult>(Op.LOCK_ACQUIRE, { name, leaseMs: 5000, waitMs: 5000, seq: b.nextSeq() });
    expect(got.acquired).toBe(true);
    // Not before A's lease ran out (it started before heldAt, so allow for the round trip).
    expect(Date.now() - heldAt).toBeGreaterThanOrEqual(1000);
    tokens.push(got.token!);
    // A's stale token no longer works.
    const stale = await a.call<{ released: boolean }>(Op.LOCK_RELEASE, { name, token: held.token!, seq: a.nextSeq() });
    expect(stale.released).toBe(false);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
  });

  it('never two holders at once among contending sessions, across a primary kill', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const name = encodeKey('mutex');
    let holder: string | null = null;
    let overlaps = 0;
    let acquisitions = 0;
    const tokens: number[] = [];
    const stopAt = { done: false };
    const worker = async (idx: number): Promise<void> => {
      const cl = client(c);
      while (!stopAt.done) {
        const r = await cl.call<LockResult>(Op.LOCK_ACQUIRE, { name, leaseMs: 10_000, waitMs: 300, seq: cl.nextSeq() });
        if (!r.acquired) continue;
        if (holder !== null) overlaps++;
        holder = `w${idx}`;
        acquisitions++;
        tokens.push(r.token!);
        await new Promise((res) => setImmediate(res));
        holder = null;
        const rel = await cl.call<{ released: boolean }>(Op.LOCK_RELEASE, { name, token: r.token!, seq: cl.nextSeq() });
        expect(rel.released).toBe(true);
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
    const a = client(c);
    const b = client(c);
    const name = encodeKey('busy');
    expect((await a.call<LockResult>(Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 10_000, seq: a.nextSeq() })).acquired).toBe(true);
    const r = await b.call<LockResult>(Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 10_000, seq: b.nextSeq() });
    expect(r.acquired).toBe(false);
    expect(r.heldForMs).toBeGreaterThan(0);
    const t0 = Date.now();
    const w = await b.call<LockResult>(Op.LOCK_ACQUIRE, { name, leaseMs: 10_000, waitMs: 200, seq: b.nextSeq() });
    expect(w.acquired).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
  });
});
