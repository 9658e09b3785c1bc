/**
 * GridCache.keys(): the decoded keys of a scan, on a real one-node LocalCluster (16 partitions,
 * so small batches page through several partitions with cursors).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidKeyError, decodeKey, encodeKey, type GridKey } from '@gridlink/affinity';
import { Op, WireClient } from '@gridlink/protocol';
import { GridConfigError } from '@gridlink/client';
import { oneNodeGrid } from './helpers/grid.js';

const hex = (k: GridKey): string => Buffer.from(encodeKey(k)).toString('hex');
const byEncoding = (a: GridKey, b: GridKey): number => (hex(a) < hex(b) ? -1 : hex(a) > hex(b) ? 1 : 0);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('GridCache.keys()', () => {
  const grid = oneNodeGrid();
  const wires: WireClient[] = [];
  afterEach(() => {
    for (const w of wires.splice(0)) w.close();
  });

  it('yields exactly the stored keys, decoded, while scan still yields their bytes', async () => {
    const c = grid.client.cache('keys-mixed');
    const stored: GridKey[] = [
      'user:42',
      '',
      'é🌈 unicode',
      0,
      -17,
      Number.MAX_SAFE_INTEGER,
      1.5,
      -Infinity,
      2n ** 70n,
      -(2n ** 64n),
      true,
      Uint8Array.of(0, 1, 255),
      new Uint8Array(0),
      ['tenant-7', 'cart', 19],
      ['nested', [1n << 80n, [false, Uint8Array.of(9)]]],
      [],
      ...Array.from({ length: 40 }, (_, i) => `k${i}`),
    ];
    await c.putAll(stored.map((k, i) => [k, i] as const));
    expect(await c.size()).toBe(stored.length);

    const keys = await collect(c.keys({ batchSize: 3 }));
    expect(keys.length).toBe(stored.length);
    expect([...keys].sort(byEncoding)).toStrictEqual([...stored].sort(byEncoding));

    const scanned = await collect(c.scan({ batchSize: 3 }));
    expect(scanned.every((b) => b instanceof Uint8Array)).toBe(true);
    expect(scanned.map((b) => Buffer.from(b).toString('hex')).sort()).toEqual(stored.map(hex).sort());
    // same order as scan, key for key
    expect(keys.map(hex)).toEqual(scanned.map((b) => Buffer.from(b).toString('hex')));

    // every yielded key addresses its entry
    const values = await c.getAll(keys);
    expect(keys.map((k, i) => hex(stored[values[i] as number]!) === hex(k))).toEqual(keys.map(() => true));
  });

  it('yields keys in the normal form of the encoding (an integer is a number when safe, else a bigint; bytes are a Uint8Array)', async () => {
    const c = grid.client.cache<bigint | number | Uint8Array, string>('keys-normal');
    await c.put(5n, 'small bigint');
    await c.put(2 ** 60, 'large number');
    await c.put(-0, 'minus zero');
    await c.put(Buffer.from('buf'), 'buffer');
    const keys = await collect(c.keys());
    expect([...keys].sort(byEncoding)).toStrictEqual([5, 2n ** 60n, 0, new Uint8Array(Buffer.from('buf'))].sort(byEncoding));
    const bytes = keys.find((k) => k instanceof Uint8Array);
    expect(Buffer.isBuffer(bytes)).toBe(false);
    expect(Object.is(keys.find((k) => k === 0), 0)).toBe(true);
    expect(await c.get(5)).toBe('small bigint');
  });

  it('yields nothing for an empty cache, and validates batchSize like scan', async () => {
    const c = grid.client.cache('keys-empty');
    expect(await collect(c.keys())).toEqual([]);
    for (const batchSize of [0, -1, 1.5, NaN]) {
      await expect(collect(c.keys({ batchSize }))).rejects.toBeInstanceOf(GridConfigError);
      await expect(collect(c.keys({ batchSize }))).rejects.toMatchObject({ field: 'batchSize' });
    }
  });

  it("refuses a batchSize over the protocol's 65536 before sending, as it refuses one under 1", async () => {
    const c = grid.client.cache('keys-batch');
    await c.put('k', 1);
    const before = grid.client.stats().operations;
    for (const it of [() => c.keys({ batchSize: 65_537 }), () => c.scan({ batchSize: 65_537 })]) {
      // It went out and came back as the node's BAD_REQUEST (a GridServerError).
      await expect(collect(it())).rejects.toMatchObject({ name: 'GridConfigError', field: 'batchSize' });
    }
    expect(grid.client.stats().operations).toBe(before);
    expect(await collect(c.keys({ batchSize: 65_536 }))).toEqual(['k']);
  });

  it('stops with InvalidKeyError naming the cache and partition when a stored key is not a canonical encoding', async () => {
    const c = grid.client.cache('keys-forged');
    await c.put('fine', 1);
    // A writer that bypasses the encoder: a non-minimal integer (0 as 03 80 00).
    const forged = Uint8Array.of(0x03, 0x80, 0x00);
    expect(() => decodeKey(forged)).toThrow(InvalidKeyError);
    const node = grid.cluster.node(grid.cluster.nodeIds[0]!);
    const wire = new WireClient({ host: '127.0.0.1', port: node.port, sessionId: 'keys-forger' });
    wires.push(wire);
    await wire.ready;
    await wire.request(Op.CACHE_PUT, { cache: 'keys-forged', key: forged, value: new Uint8Array([0x01]), seq: 1 }, 3000);

    const scanned = (await collect(c.scan())).map((b) => Buffer.from(b).toString('hex'));
    expect(scanned.sort()).toEqual(['038000', hex('fine')].sort());

    const err: unknown = await collect(c.keys()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidKeyError);
    expect((err as InvalidKeyError).code).toBe('GRID_INVALID_KEY');
    expect((err as Error).message).toMatch(/cache 'keys-forged' partition \d+ holds key bytes 038000 that do not decode: .*non-minimal/);
  });
});
