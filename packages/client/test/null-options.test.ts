/**
 * Per-call options given as null are refused as every other wrong value is (a GridConfigError
 * naming the option, before anything is sent), not quietly replaced by the default: `timeoutMs` of
 * `lock.acquire()` and `withLock()` (with or without `noWait`, which take the same path as
 * `attempt()` and `acquire()`), and `batchSize` of `scan()` and `keys()`. Against a scripted node
 * that would grant every lock and answer every scan, so that a null taken as the default is seen.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { GridClient, GridConfigError, type AcquireOptions, type ScanOptions } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { rejection, show } from './helpers/wait.js';

let node: ScriptedNode;
let client: GridClient;
let token = 0;

const LOCK_OPS: readonly number[] = [Op.LOCK_ACQUIRE, Op.LOCK_TRY_ACQUIRE];

beforeAll(async () => {
  node = await new ScriptedNode('n1', 8, (req, n) => {
    if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
    if (req.op === Op.HEARTBEAT) return { payload: {} };
    if (LOCK_OPS.includes(req.op)) return { payload: { acquired: true, token: ++token } };
    if (req.op === Op.LOCK_RELEASE) return { payload: { released: true } };
    if (req.op === Op.CACHE_SCAN) return { payload: { keys: [], cursor: null } };
    return undefined;
  }).start();
  client = await GridClient.connect({ endpoints: [node.endpoint], operationTimeout: 2000 });
});

afterAll(async () => {
  await client?.close();
  await node?.close();
});

function expectConfigError(e: unknown, field: string): void {
  expect(e, show(e)).toBeInstanceOf(GridConfigError);
  expect((e as GridConfigError).field).toBe(field);
}

/** Requests of `ops` the node received. */
function sent(ops: readonly number[]): number {
  return node.requests.filter((r) => ops.includes(r.op)).length;
}

describe('timeoutMs: null is refused by every way of taking a lock', () => {
  const nullTimeout = { timeoutMs: null } as unknown as AcquireOptions;

  it('acquire, as attempt and tryAcquire are', async () => {
    const before = sent(LOCK_OPS);
    expectConfigError(await rejection(client.lock('null-timeout').acquire(nullTimeout)), 'timeoutMs');
    expectConfigError(await rejection(client.lock('null-timeout').attempt(nullTimeout)), 'timeoutMs');
    expectConfigError(await rejection(client.lock('null-timeout').tryAcquire(nullTimeout)), 'timeoutMs');
    expect(sent(LOCK_OPS), 'nothing sent for a refused call').toBe(before);
  });

  it('withLock, with and without noWait alike', async () => {
    const before = sent(LOCK_OPS);
    let ran = 0;
    const fn = (): void => {
      ran++;
    };
    expectConfigError(await rejection(client.withLock('null-timeout', fn, nullTimeout)), 'timeoutMs');
    expectConfigError(await rejection(client.withLock('null-timeout', fn, { ...nullTimeout, noWait: true })), 'timeoutMs');
    expect(ran).toBe(0);
    expect(sent(LOCK_OPS)).toBe(before);
  });

  it('an absent timeoutMs still takes the default deadline', async () => {
    const h = await client.lock('null-timeout').acquire({ waitMs: 100 });
    await h.release();
  });
});

describe('batchSize: null is refused by scan and keys, as ttlMs: null is by the writes', () => {
  const nullBatch = { batchSize: null } as unknown as ScanOptions;

  async function drain(it: AsyncIterable<unknown>): Promise<number> {
    let n = 0;
    for await (const _ of it) n++;
    return n;
  }

  it('scan and keys', async () => {
    const before = sent([Op.CACHE_SCAN]);
    const c = client.cache<string, number>('null-batch');
    expectConfigError(await rejection(drain(c.scan(nullBatch))), 'batchSize');
    expectConfigError(await rejection(drain(c.keys(nullBatch))), 'batchSize');
    expect(sent([Op.CACHE_SCAN]), 'nothing sent for a refused call').toBe(before);
    // The same style as ttlMs, refused when null.
    expectConfigError(await rejection(c.put('k', 1, { ttlMs: null as unknown as number })), 'ttlMs');
    // Absent: the default.
    expect(await drain(c.scan())).toBe(0);
  });
});
