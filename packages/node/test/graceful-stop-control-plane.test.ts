/**
 * A graceful stop (SIGTERM) when the control plane is slow or gone: it must end on its own, and
 * once it has given its lease up no late renewal may bring the lease back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LEASE_PREFIX, silentLogger, startNode, type GridNode } from '@gridlink/node';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { until } from './helpers/until.js';

describe('graceful stop and the control plane', () => {
  let node: GridNode | undefined;
  let cp: FlakyControlPlane | undefined;
  afterEach(() => {
    node?.kill();
    node = undefined;
    cp?.answer();
    cp = undefined;
  });

  it('ends when the control plane answers nothing: the handoff and the lease delete are both bounded', async () => {
    cp = new FlakyControlPlane();
    const n = (node = await startNode({ id: 'a', controlPlane: cp, port: 0, partitions: 8, backups: 0, handoffTimeoutMs: 200, logger: silentLogger }));
    await until(() => n.isServing(), 'the node to serve');
    cp.hang = true;
    let stopped = false;
    void n.stop().then(() => (stopped = true));
    // Handoff (200 ms) + lease delete (at most a lease, 1 s) + slack. Before, the delete waited
    // for an answer that never came and the process never exited.
    await until(() => stopped, 'stop() to return', 5_000);
    expect(n.running).toBe(false);
  });

  it('writes no renewal after deleting its lease, even when the delete is acknowledged late', async () => {
    cp = new FlakyControlPlane();
    const c = cp;
    const n = (node = await startNode({
      id: 'a', controlPlane: c, port: 0, partitions: 8, backups: 0,
      leaseMs: 400, renewIntervalMs: 20, leaseMarginMs: 50, logger: silentLogger,
    }));
    await until(() => n.isServing(), 'the node to serve');
    // Several renewal intervals pass between the delete and its acknowledgement.
    c.deleteAckDelayMs = 150;
    await n.stop();
    const key = LEASE_PREFIX + 'a';
    const leaseWrites = c.written.filter((w) => w.endsWith(` ${key}`));
    expect(leaseWrites.at(-1)).toBe(`delete ${key}`);
    expect(await c.peek(key)).toBeNull();
  });
});
