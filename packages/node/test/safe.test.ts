import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LocalCluster, type LeaseRecord } from '@gridlink/node';
import { initialTopology, nextTopology, nodeSafety } from '@gridlink/node/internal';
import { untilValue } from './helpers/until.js';

const lease = (id: string, epoch = `${id}-e`): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced: {} });

interface SafeBody {
  safe: boolean;
  id: string;
  reason?: string;
  underReplicated?: number[];
  lost?: number[];
}

async function safeOf(c: LocalCluster, id: string): Promise<{ status: number; body: SafeBody }> {
  const res = await fetch(`http://127.0.0.1:${c.node(id).httpPort!}/health/safe`);
  return { status: res.status, body: (await res.json()) as SafeBody };
}

/** The node's /health/safe answer once `ok` holds for it. */
function safeWhen(c: LocalCluster, id: string, what: string, ok: (v: { status: number; body: SafeBody }) => boolean): Promise<{ status: number; body: SafeBody }> {
  let last: unknown;
  return untilValue(async () => {
    const v = await safeOf(c, id);
    last = v;
    return ok(v) ? v : null;
  }, what, 10_000, () => last);
}

describe('nodeSafety (pure)', () => {
  it('names only partitions the node holds or pulls, and is safe exactly when it names none and nothing is lost', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 2 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), (n, backups, dies) => {
        const ids = Array.from({ length: n }, (_, i) => `n${i}`);
        const t0 = initialTopology({ clusterId: 'c', partitions: 16, backups, leases: ids.map((id) => lease(id)), autoAdjust: { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 } });
        const alive = ids.filter((_, i) => !dies[i]).map((id) => lease(id));
        const t1 = nextTopology(t0, alive, 0) ?? t0;
        for (const id of ids) {
          const s = nodeSafety(t1, id);
          const holds = (p: number): boolean => t1.owners[p]!.includes(id) || t1.syncing[p]!.some((e) => e.id === id);
          for (const p of [...s.underReplicated, ...s.moving]) expect(holds(p)).toBe(true);
          expect(s.lost).toEqual(t1.lost);
          expect(s.safe).toBe(s.underReplicated.length + s.moving.length + s.lost.length === 0);
        }
      }),
    );
  });
});

describe('/health/safe', () => {
  let c: LocalCluster | undefined;
  afterEach(async () => {
    await c?.stop();
    c = undefined;
  });

  it('200 on a balanced cluster; 503 under-replicated after a death; 200 again once the copies are rebuilt', async () => {
    c = await LocalCluster.start({ nodes: 3, partitions: 16, backups: 1, http: true, autoAdjust: { enabled: false } });
    const cl = c;
    await cl.waitForStable();
    for (const id of cl.nodeIds) {
      const r = await safeOf(cl, id);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ safe: true, id });
    }
    const [victim, ...rest] = cl.nodeIds as [string, ...string[]];
    await cl.kill(victim);
    for (const id of rest) {
      const r = await safeWhen(cl, id, `${id} unsafe`, (v) => v.status === 503);
      expect(r.body.safe).toBe(false);
      expect(r.body.reason).toBe('partitions under-replicated');
      expect(r.body.underReplicated!.length).toBeGreaterThan(0);
    }
    await cl.restart(victim);
    await cl.waitForStable(20_000);
    for (const id of cl.nodeIds) await safeWhen(cl, id, `${id} safe`, (v) => v.status === 200);
  }, 30_000);

  it('503 with the lost partitions when a partition lost its last copy', async () => {
    c = await LocalCluster.start({ nodes: 2, partitions: 8, backups: 0, http: true, autoAdjust: { enabled: false } });
    const cl = c;
    await cl.waitForStable();
    const [victim, survivor] = cl.nodeIds as [string, string];
    await cl.kill(victim);
    const r = await safeWhen(cl, survivor, 'lost', (v) => v.status === 503);
    expect(r.body.reason).toBe('partitions lost');
    expect(r.body.lost!.length).toBeGreaterThan(0);
  }, 30_000);
});
