/**
 * A graceful stop (SIGTERM) when the control plane is slow or gone: it must end on its own, and
 * once it has given its lease up no late renewal may bring the lease back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LEASE_PREFIX, silentLogger, startNode, type GridNode } from '@gridlink/node';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { FAILURE_LOG_MS } from '../src/membership/lease.js';
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
    const n = (node = await startNode({ id: 'a', controlPlane: cp, port: 0, partitions: 8, backups: 0, handoffTimeoutMs: 200, handoffOutageMs: 300, logger: silentLogger }));
    await until(() => n.isServing(), 'the node to serve');
    cp.hang = true;
    let stopped = false;
    void n.stop().then(() => (stopped = true));
    // Handoff (200 ms, and 300 ms more while the control plane does not answer) + lease delete
    // (at most a lease, 1 s) + slack. Before, the delete waited for an answer that never came and
    // the process never exited.
    await until(() => stopped, 'stop() to return', 5_000);
    expect(n.running).toBe(false);
  });

  it('says the hand-off timed out when the control plane did not answer, and nothing about it after stopping', async () => {
    cp = new FlakyControlPlane();
    const said: { level: string; msg: string; fields: Record<string, unknown> | undefined }[] = [];
    const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void said.push({ level, msg, fields });
    const logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
    const n = (node = await startNode({ id: 'a', controlPlane: cp, port: 0, partitions: 8, backups: 0, handoffTimeoutMs: 200, handoffOutageMs: 300, logger }));
    await until(() => n.isServing(), 'the node to serve');
    cp.hang = true;
    await n.stop();
    // The requests the hand-off left pending fail now, after the stop.
    cp.answer();
    await new Promise((r) => setImmediate(r));
    const msgs = said.map((s) => s.msg);
    const timedOut = said.find((s) => s.msg === 'handoff timed out; stopping anyway');
    expect(timedOut, msgs.join(' | ')).toBeDefined();
    const drained = said.find((s) => s.msg === 'handed off and drained')!;
    expect(drained.fields?.['handoffMs']).toBeGreaterThanOrEqual(200);
    expect(msgs.indexOf('handoff timed out; stopping anyway')).toBeLessThan(msgs.indexOf('handed off and drained'));
    expect(msgs.slice(msgs.indexOf('node stopped') + 1).filter((m) => m.startsWith('handoff'))).toEqual([]);
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

describe('lease renewals failing, in the log', () => {
  let node: GridNode | undefined;
  afterEach(() => {
    node?.kill();
    node = undefined;
  });

  it('are said once (then at most every 10 s with a count), and their end once, not every renewal', async () => {
    const cp = new FlakyControlPlane();
    const said: { msg: string; fields: Record<string, unknown> | undefined }[] = [];
    const at = (msg: string, fields?: Record<string, unknown>) => void said.push({ msg, fields });
    const logger = { debug: at, info: at, warn: at, error: at };
    const n = (node = await startNode({ id: 'a', controlPlane: cp, port: 0, partitions: 8, backups: 0, leaseMs: 400, renewIntervalMs: 20, leaseMarginMs: 50, logger }));
    await until(() => n.isServing(), 'the node to serve');
    cp.failWrites = true;
    const before = cp.failedWrites;
    await until(() => cp.failedWrites - before >= 30, 'thirty failed renewals');
    cp.failWrites = false;
    await until(() => said.some((s) => s.msg === 'lease renewals succeed again'), 'renewals to succeed again');
    expect(said.filter((s) => s.msg === 'lease renewal failed')).toHaveLength(1);
    // 30 failures at 20 ms apart take well under 10 s: no repeat line
    expect(said.filter((s) => s.msg === 'lease renewals still failing')).toHaveLength(0);
    const back = said.find((s) => s.msg === 'lease renewals succeed again')!;
    expect(back.fields?.['failed']).toBeGreaterThanOrEqual(30);
    expect(FAILURE_LOG_MS).toBe(10_000);
  });
});
