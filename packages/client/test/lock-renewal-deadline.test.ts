import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Op, ResponseFlag } from '@gridlink/protocol';
import { GridClient, GridError, GridTimeoutError } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('an automatic renewal that is not answered', () => {
  it('is reported as a loss once the lease may have ended, not at the end of the operation timeout', async () => {
    // Acquisitions, the map and heartbeats are answered; renewals never are (a primary the client
    // cannot reach any more while the rest of the cluster can: the lease ends there, another
    // holder may take the lock).
    const node = await new ScriptedNode('n1', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      if (req.op === Op.LOCK_TRY_ACQUIRE) return { payload: { acquired: true, token: 1 } };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint], operationTimeout: 10_000, requestTimeout: 3000 });
    cleanups.push(() => client.close());
    const errors: GridError[] = [];
    client.on('error', (e) => errors.push(e));

    const LEASE = 900;
    const t0 = performance.now();
    const h = await client.lock('k').tryAcquire({ leaseMs: LEASE, autoRenew: true });
    expect(h).not.toBeNull();
    const lost = await new Promise<{ err: GridError; at: number }>((resolve) => h!.onLost((err) => resolve({ err, at: performance.now() })));
    expect(node.count(Op.LOCK_RENEW)).toBeGreaterThanOrEqual(1);
    // By the lease's end at the latest (scheduling slack aside): the holder never believes it
    // holds a lock past the time the node may have given it to another.
    expect(lost.at - t0).toBeLessThan(LEASE + 300);
    expect(lost.at - t0).toBeGreaterThan(LEASE / 3);
    expect(lost.err).toBeInstanceOf(GridTimeoutError);
    expect(h!.held).toBe(false);
    expect(h!.signal.aborted).toBe(true);
    expect(errors).toEqual([lost.err]);
  });

  it('a lock granted after a long wait on the node is renewed as usual: its lease counts from the answer, not the request', async () => {
    const node = await new ScriptedNode('n1', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      // Granted after a wait longer than the lease.
      if (req.op === Op.LOCK_ACQUIRE) return { payload: { acquired: true, token: 1 }, delayMs: 900 };
      if (req.op === Op.LOCK_RENEW) return { payload: { renewed: true } };
      if (req.op === Op.LOCK_RELEASE) return { payload: { released: true } };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint] });
    cleanups.push(() => client.close());
    const errors: GridError[] = [];
    client.on('error', (e) => errors.push(e));
    const h = await client.lock('k').acquire({ leaseMs: 600, waitMs: 5000, autoRenew: true });
    const deadline = performance.now() + 5000;
    while (h.renewals < 3 && h.held && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(errors).toEqual([]);
    expect(h.held).toBe(true);
    expect(h.renewals).toBeGreaterThanOrEqual(3);
    await h.release();
  });

  it('a lock taken on a retry after a slow refusal is renewed as usual: no loss is made up from the time of the first attempt', async () => {
    let tries = 0;
    const node = await new ScriptedNode('n1', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      // The first attempt is refused late (a partition moving), the retry granted.
      if (req.op === Op.LOCK_TRY_ACQUIRE) {
        if (++tries === 1) return { flags: ResponseFlag.ERROR, payload: { code: ErrorCode.PARTITION_MOVING, message: 'moving' }, delayMs: 700 };
        return { payload: { acquired: true, token: 1 } };
      }
      // Answered in a while, as over a real network.
      if (req.op === Op.LOCK_RENEW) return { payload: { renewed: true }, delayMs: 50 };
      if (req.op === Op.LOCK_RELEASE) return { payload: { released: true } };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint] });
    cleanups.push(() => client.close());
    const errors: GridError[] = [];
    client.on('error', (e) => errors.push(e));
    const h = await client.lock('k').tryAcquire({ leaseMs: 900, autoRenew: true });
    expect(tries).toBe(2);
    const deadline = performance.now() + 5000;
    while (h!.renewals < 3 && h!.held && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(errors).toEqual([]);
    expect(h!.held).toBe(true);
    await h!.release();
  });
});
