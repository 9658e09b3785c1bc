/**
 * `undefined` as a value: MessagePack has no undefined (it would be stored as nil and read back
 * as null), so the default serializer refuses it with GridSerializationError on every write path,
 * before anything is sent. A custom serializer that can encode undefined is used as it is.
 * Against a real one-node LocalCluster.
 */
import { describe, expect, it } from 'vitest';
import { GridSerializationError, msgpackSerializer, type Serializer } from '@gridlink/client';
import { oneNodeGrid } from './helpers/grid.js';
import { rejection } from './helpers/wait.js';

const grid = oneNodeGrid();

describe('undefined as a value', () => {
  it('the default serializer refuses it', () => {
    expect(() => msgpackSerializer.serialize(undefined)).toThrow(GridSerializationError);
    expect(() => msgpackSerializer.serialize(undefined)).toThrow(/undefined/);
  });

  it('every write path refuses it with GridSerializationError before anything is sent; the entry is unchanged', async () => {
    const client = grid.client;
    const c = client.cache<string, unknown>('undefined-values');
    await c.put('k', 'before');
    const handle = await client.lock('k').acquire({ leaseMs: 10_000 });
    const writes: [string, () => Promise<unknown>][] = [
      ['put', () => c.put('k', undefined)],
      ['put with ttl', () => c.put('k', undefined, { ttlMs: 1000 })],
      ['putAll', () => c.putAll([['k', undefined]])],
      ['putAll (Map)', () => c.putAll(new Map<string, unknown>([['other', 1], ['k', undefined]]))],
      ['putIfAbsent', () => c.putIfAbsent('absent', undefined)],
      ['replace', () => c.replace('k', undefined)],
      ['replaceIfEquals (value)', () => c.replaceIfEquals('k', 'before', undefined)],
      ['replaceIfEquals (expected)', () => c.replaceIfEquals('k', undefined, 'after')],
      ['removeIfEquals (expected)', () => c.removeIfEquals('k', undefined)],
      ['getAndPut', () => c.getAndPut('k', undefined)],
      ['putAndRelease', () => handle.putAndRelease(c, undefined)],
    ];
    const operations = client.stats().operations;
    for (const [name, write] of writes) {
      const e = await rejection(write());
      expect(e, name).toBeInstanceOf(GridSerializationError);
      expect((e as GridSerializationError).code, name).toBe('GRID_SERIALIZATION');
      expect((e as GridSerializationError).retryable, name).toBe(false);
    }
    // Nothing was sent: no operation started, nothing stored, the lock still held.
    expect(client.stats().operations).toBe(operations);
    expect(await c.get('k')).toBe('before');
    expect(await c.containsKey('absent')).toBe(false);
    expect(await c.containsKey('other')).toBe(false);
    expect(handle.held).toBe(true);
    await handle.release();
  });

  it('inside a value, undefined follows MessagePack as JSON does: an object property is left out, an array element reads back as null', async () => {
    const c = grid.client.cache<string, unknown>('undefined-values');
    await c.put('nested', { a: undefined, b: 1, list: [1, undefined] });
    expect(await c.get('nested')).toEqual({ b: 1, list: [1, null] });
  });

  it('a custom serializer that encodes undefined is used: stored, and read back as it decodes', async () => {
    // One tag byte: 0 = undefined, 1 = a JSON text follows.
    const tagged: Serializer<unknown> = {
      serialize: (v) => (v === undefined ? Uint8Array.of(0) : Buffer.concat([Uint8Array.of(1), Buffer.from(JSON.stringify(v))])),
      deserialize: (b) => (b[0] === 0 ? undefined : (JSON.parse(Buffer.from(b.subarray(1)).toString()) as unknown)),
    };
    const c = grid.client.cache<string, unknown>('undefined-custom', { serializer: tagged });
    await c.put('u', undefined);
    expect(await c.containsKey('u')).toBe(true);
    expect(await c.get('u')).toBeUndefined();
    expect(await c.getAndPut('u', 5)).toBeUndefined();
    expect(await c.get('u')).toBe(5);
    expect(await c.replace('u', undefined)).toBe(true);
    expect(await c.containsKey('u')).toBe(true);
  });
});
