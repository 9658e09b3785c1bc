/**
 * A node's announced frame limit (ADR 0009), with real nodes on 127.0.0.1 whose maxFrameSize is
 * smaller than the client's: a request over it is refused before it is sent, at once, with a
 * typed non-retryable error naming the node's limit; everything else on the same client and
 * connections carries on, with no reconnect and no retry. A node that announces no limit (one
 * from before the field) is sent what the client's own limit allows, as before.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { GridClient, GridSerializationError, bytesSerializer } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { gridFixture } from './helpers/grid.js';
import { settle, waitFor } from './helpers/wait.js';

const LIMIT = 64 * 1024;
const grid = gridFixture({ nodes: 2, backups: 1, partitions: 16, maxFrameSize: LIMIT });

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('nodes with a smaller maxFrameSize than the client', () => {
  it('an oversized put fails at once with GridSerializationError naming the node limit; the other operations of the client keep working, with no reconnect or retry', async () => {
    // A long operation deadline: a request treated as a lost connection would retry until it.
    const client = await GridClient.connect({ endpoints: grid.cluster.endpoints, connectTimeout: 3000, operationTimeout: 20_000 });
    cleanups.push(() => client.close());
    await waitFor(() => client.bookkeeping().connections === 2, 5000, 'a connection to each node');
    let disconnects = 0;
    let retries = 0;
    client.on('disconnected', () => disconnects++);
    client.on('retry', () => retries++);
    const retriesBefore = client.stats().retries;

    const c = client.cache<string, unknown>('frame-limit');
    const raw = client.cache<string, Uint8Array>('frame-limit', { serializer: bytesSerializer });
    const big = new Uint8Array(LIMIT + 1);
    const small = Array.from({ length: 40 }, (_, i) => `k${i}`);
    // The oversized calls go out in the same tick as ordinary ones, on the same connections.
    const others = Promise.all(small.map((k, i) => c.put(k, i)));
    const oversized: [string, Promise<unknown>][] = [
      ['put bytes', raw.put('big', big)],
      ['put value', c.put('big', 'v'.repeat(LIMIT))],
      ['put key', c.put('k'.repeat(LIMIT), 1)],
      ['get key', c.get('k'.repeat(LIMIT))],
      ['putAll', c.putAll(small.map((k) => [k, 'x'.repeat(LIMIT / 8)] as [string, string]))],
      ['getAll', c.getAll(small.map((k) => k.padEnd(LIMIT / 8, '-')))],
    ];
    const moreOthers = Promise.all(small.map((k) => c.get(k)));
    for (const [name, p] of oversized) {
      const r = await settle(p, 2000);
      if (r === 'pending') throw new Error(`${name}: still pending after 2 s (retrying instead of failing?)`);
      expect(r.ok, name).toBe(false);
      const e = (r as { error: unknown }).error as GridSerializationError;
      expect(e, `${name}: ${String(e)}`).toBeInstanceOf(GridSerializationError);
      expect(e.code).toBe('GRID_SERIALIZATION');
      expect(e.retryable).toBe(false);
      expect(e.message).toMatch(new RegExp(`exceeds the maximum frame size ${LIMIT} \\(the maxFrameSize node (${grid.cluster.nodeIds.join('|')}) at 127\\.0\\.0\\.1:\\d+ announced\\)`));
      expect((e.cause as { code?: string }).code).toBe('GRID_FRAME_TOO_LARGE');
    }
    await others;
    expect(await moreOthers).toHaveLength(small.length);
    expect(await c.getAll(small)).toEqual(small.map((_, i) => i));
    expect(await c.get('big')).toBeUndefined(); // nothing was sent, so nothing stored
    // Up to the limit still goes through.
    await raw.put('fits', new Uint8Array(LIMIT - 200));
    expect(await raw.get('fits')).toHaveLength(LIMIT - 200);

    expect(disconnects).toBe(0);
    expect(retries).toBe(0);
    expect(client.stats().retries).toBe(retriesBefore);
    expect(client.bookkeeping().connections).toBe(2);
    await waitFor(() => client.bookkeeping().operations === 0 && client.bookkeeping().openSeqs === 0, 5000, 'no operation or seq left open');
  });
});

describe('a node that announces no limit (before ADR 0009)', () => {
  it('is sent requests up to the client own limit, as before', async () => {
    const node = await new ScriptedNode('old-node', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT || req.op === Op.CACHE_PUT) return { payload: {} };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint], connectTimeout: 3000 });
    cleanups.push(() => client.close());
    const raw = client.cache<string, Uint8Array>('old', { serializer: bytesSerializer });
    await raw.put('k', new Uint8Array(LIMIT + 1));
    const put = node.requests.find((r) => r.op === Op.CACHE_PUT);
    expect((put?.payload as { value?: Uint8Array } | undefined)?.value).toHaveLength(LIMIT + 1);
  });
});
