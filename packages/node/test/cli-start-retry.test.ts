/**
 * gridlink-node's start-up after connecting: the control plane may still answer "unavailable"
 * (a JetStream leader election after a nats-server restart keeps the KV failing for 10 s and
 * more). The steps are retried until the connect deadline instead of exiting 1 (a pod would go
 * into a crash-loop back-off); other errors, and the last one at the deadline, are not retried.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { NodeConfigError, silentLogger, startNode, type GridNode, type Logger } from '@gridlink/node';
import { STARTUP_SLOW_LOG_MS } from '../src/logger.js';
import { joinOrCreateCluster, retriedWhileUnavailable } from '../src/cli/cluster.js';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { until } from './helpers/until.js';
import { recordingLogger } from './helpers/logger.js';

describe('gridlink-node start-up while the control plane is unavailable', () => {
  let node: GridNode | undefined;
  afterEach(() => {
    node?.kill();
    node = undefined;
  });

  it('joins once the control plane answers again, within the deadline', async () => {
    const cp = new FlakyControlPlane();
    cp.failReads = true;
    cp.failWrites = true;
    const log = recordingLogger();
    const deadline = Date.now() + 30_000;
    const starting = (async () => {
      const { record } = await retriedWhileUnavailable('cluster record', deadline, log, () => joinOrCreateCluster(cp, { partitions: 8, backups: 0 }), 20);
      return retriedWhileUnavailable('node start', deadline, log, () => startNode({ id: 'a', controlPlane: cp, port: 0, partitions: record.partitions, backups: record.backups, logger: silentLogger }), 20);
    })();
    await until(() => cp.failedReads >= 3, 'failed start-up reads');
    cp.failReads = false;
    cp.failWrites = false;
    node = await starting;
    const n = node;
    await until(() => n.isServing(), 'the node to serve');
    expect(log.warnings.filter((w) => w.includes('not ready at start-up')).length).toBeGreaterThanOrEqual(3);
  });

  it('a node start that failed half-way is retried on the same port', async () => {
    const cp = new FlakyControlPlane();
    const log = recordingLogger();
    // The first attempt listens, then fails reading the control plane; the next must listen again.
    const first = await startNode({ id: 'p', controlPlane: cp, port: 0, partitions: 8, backups: 0, logger: silentLogger });
    const port = first.port;
    first.kill();
    cp.failReads = true;
    let attempts = 0;
    const starting = retriedWhileUnavailable('node start', Date.now() + 30_000, log, () => {
      if (++attempts === 3) cp.failReads = false;
      return startNode({ id: 'p', controlPlane: cp, port, partitions: 8, backups: 0, logger: silentLogger });
    }, 20);
    node = await starting;
    expect(attempts).toBe(3);
    expect(node.port).toBe(port);
  });

  it('other errors are not retried, and at the deadline the last unavailability is thrown', async () => {
    const log = recordingLogger();
    let calls = 0;
    await expect(
      retriedWhileUnavailable('x', Date.now() + 30_000, log, () => {
        calls++;
        return Promise.reject(new NodeConfigError('partitions', 'differs'));
      }),
    ).rejects.toBeInstanceOf(NodeConfigError);
    expect(calls).toBe(1);
    const cp = new FlakyControlPlane();
    cp.failReads = true;
    await expect(retriedWhileUnavailable('cluster record', Date.now() + 100, log, () => joinOrCreateCluster(cp, {}), 20)).rejects.toThrow(/get failed/);
    expect(cp.failedReads).toBeGreaterThan(1);
  });

  it('a start-up that waits on a control plane that does not answer says in which step, until it ends', async () => {
    // Only the warning's interval is faked: the node listens on a real socket meanwhile.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const cp = new FlakyControlPlane();
      cp.hang = true;
      const lines: Record<string, unknown>[] = [];
      const logger: Logger = { ...silentLogger, warn: (msg, fields) => void lines.push({ msg, ...fields }) };
      const starting = startNode({ id: 'slow', controlPlane: cp, port: 0, partitions: 8, backups: 0, logger }).then(
        (n) => n,
        (err: unknown) => err as Error,
      );
      await until(() => {
        vi.advanceTimersByTime(STARTUP_SLOW_LOG_MS);
        return lines.some((l) => l['step'] === 'reading the members (control plane)');
      }, 'a warning naming the step it waits in');
      // (Warnings that came while it still bound its port name that step.)
      expect(new Set(lines.map((l) => l['step']))).toEqual(new Set(['listening', 'reading the members (control plane)'].slice(lines[0]!['step'] === 'listening' ? 0 : 1)));
      expect(lines.at(-1)).toMatchObject({ msg: 'start-up still waiting', id: 'slow', step: 'reading the members (control plane)' });
      cp.answer();
      const outcome = await starting;
      expect(outcome).toBeInstanceOf(Error);
      // Failed: the warnings end with it.
      const count = lines.length;
      vi.advanceTimersByTime(STARTUP_SLOW_LOG_MS * 3);
      expect(lines.length).toBe(count);
    } finally {
      vi.useRealTimers();
    }
  });
});
