import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Op, ResponseFlag } from '@gridlink/protocol';
import { GridClient, GridServerError, type GridClientConfig } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const error = (code: number): { flags: number; payload: unknown } => ({ flags: ResponseFlag.ERROR, payload: { code, message: `scripted error ${code}` } });

/**
 * A node whose CACHE_GET answers are the scripted error codes in turn, then a value; the map and
 * heartbeats are answered. Returns the client (its retry events counted) and the GETs received.
 */
async function scripted(codes: number[], retry: GridClientConfig['retry']): Promise<{ client: GridClient; gets: () => number; retryEvents: () => number }> {
  let gets = 0;
  const node = await new ScriptedNode('n1', 8, (req, n) => {
    if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
    if (req.op === Op.HEARTBEAT) return { payload: {} };
    if (req.op === Op.CACHE_GET) {
      const code = codes[gets++];
      return code === undefined ? { payload: { value: null } } : error(code);
    }
    return undefined;
  }).start();
  cleanups.push(() => node.close());
  const client = await GridClient.connect({ endpoints: [node.endpoint], retry, operationTimeout: 5000 });
  cleanups.push(() => client.close());
  let events = 0;
  client.on('retry', (e) => {
    events++;
    // The documented payload: the op, the number of the attempt that failed (1 for the first), its error.
    expect(e.op).toBe(Op.CACHE_GET);
    expect(e.attempt).toBe(events);
    expect(e.error).toBeInstanceOf(GridServerError);
  });
  return { client, gets: () => gets, retryEvents: () => events };
}

describe('the retry budget bounds only failures that are not transitions', () => {
  it('retries: 0: transitions (NOT_PRIMARY, PARTITION_MOVING, NOT_READY, REPLICATION_FAILED) are still retried until they end', async () => {
    const codes = [ErrorCode.NOT_PRIMARY, ErrorCode.PARTITION_MOVING, ErrorCode.NOT_PRIMARY, ErrorCode.NOT_READY, ErrorCode.REPLICATION_FAILED, ErrorCode.REPLICATION_FAILED, ErrorCode.NOT_PRIMARY];
    const { client, gets, retryEvents } = await scripted(codes, { retries: 0, minDelay: 1, maxDelay: 5 });
    await expect(client.cache('c').get('k')).resolves.toBeUndefined();
    expect(gets()).toBe(codes.length + 1);
    expect(retryEvents()).toBe(codes.length);
  });

  it('retries: 0: a failure that uses up the budget is not retried at all', async () => {
    const { client, gets, retryEvents } = await scripted([ErrorCode.TIMEOUT], { retries: 0, minDelay: 1, maxDelay: 5 });
    const err = await client.cache('c').get('k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GridServerError);
    expect((err as GridServerError).code).toBe('GRID_TIMEOUT');
    expect(gets()).toBe(1);
    expect(retryEvents()).toBe(0);
  });

  it('retries: 2: three attempts for failures that use up the budget, however many transitions come between', async () => {
    const codes = [ErrorCode.TIMEOUT, ErrorCode.NOT_PRIMARY, ErrorCode.OVERLOADED, ErrorCode.NOT_PRIMARY, ErrorCode.NOT_PRIMARY, ErrorCode.TIMEOUT, ErrorCode.TIMEOUT];
    const { client, gets } = await scripted(codes, { retries: 2, minDelay: 1, maxDelay: 5 });
    const err = await client.cache('c').get('k').catch((e: unknown) => e);
    expect((err as GridServerError).code).toBe('GRID_TIMEOUT');
    // TIMEOUT, NOT_PRIMARY, OVERLOADED, NOT_PRIMARY, NOT_PRIMARY, TIMEOUT: the third budget failure ends it.
    expect(gets()).toBe(6);
  });

  it('a transition after the budget is spent is still retried', async () => {
    const codes = [ErrorCode.TIMEOUT, ErrorCode.TIMEOUT, ErrorCode.NOT_PRIMARY, ErrorCode.PARTITION_MOVING];
    const { client, gets } = await scripted(codes, { retries: 1, minDelay: 1, maxDelay: 5 });
    const err = await client.cache('c').get('k').catch((e: unknown) => e);
    // Two budget failures with retries: 1: the second ends the operation.
    expect((err as GridServerError).code).toBe('GRID_TIMEOUT');
    expect(gets()).toBe(2);
    const again = await scripted([ErrorCode.TIMEOUT, ErrorCode.NOT_PRIMARY, ErrorCode.PARTITION_MOVING, ErrorCode.NOT_PRIMARY], { retries: 1, minDelay: 1, maxDelay: 5 });
    await expect(again.client.cache('c').get('k')).resolves.toBeUndefined();
    expect(again.gets()).toBe(5);
  });
});
