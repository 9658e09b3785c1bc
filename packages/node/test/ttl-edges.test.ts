/** TTLs at their edges over the wire: 0, the longest a cache may default to, and beyond it. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { LocalCluster } from '@gridlink/node';
import { ErrorCode, Op } from '@gridlink/protocol';
import { GridError, TestConnection } from './helpers/client.js';

describe('cache TTL edges', () => {
  let cluster: LocalCluster;
  let conn: TestConnection;
  let seq = 0;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8 });
    conn = await TestConnection.connect(cluster.endpoints[0]!);
  });
  afterAll(async () => {
    conn?.close();
    await cluster?.stop();
  });

  const put = (cache: string, more: Record<string, unknown> = {}): Promise<unknown> => conn.call(Op.CACHE_PUT, { cache, key: encodeKey('k'), value: new Uint8Array([7]), seq: ++seq, ...more });
  const get = async (cache: string): Promise<number[] | null> => {
    const r = await conn.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache, key: encodeKey('k') });
    return r.value === null ? null : [...r.value];
  };
  const refusal = async (p: Promise<unknown>): Promise<{ code: number; message: string }> => {
    try {
      await p;
    } catch (err) {
      if (err instanceof GridError) return { code: err.code, message: err.payload.message };
      throw err;
    }
    throw new Error('not refused');
  };

  it('a cache whose default TTL no expiry can hold is refused at creation, naming config.ttlMs (it was created, then every write to it failed)', async () => {
    for (const ttlMs of [Number.MAX_SAFE_INTEGER, 2 ** 52 + 1]) {
      const r = await refusal(conn.call(Op.CACHE_CREATE, { cache: `huge-${ttlMs}`, config: { ttlMs } }));
      expect(r.code).toBe(ErrorCode.BAD_REQUEST);
      expect(r.message).toContain('config.ttlMs');
      // Not created: the name is still an implicit cache with the defaults, which takes writes.
      await put(`huge-${ttlMs}`);
      expect(await get(`huge-${ttlMs}`)).toEqual([7]);
    }
    // The longest default allowed takes writes, which stay.
    await conn.call(Op.CACHE_CREATE, { cache: 'longest', config: { ttlMs: 2 ** 52 } });
    await put('longest');
    expect(await get('longest')).toEqual([7]);
    // TTL 0 on a write: no expiry, also in a cache with a default TTL.
    await conn.call(Op.CACHE_CREATE, { cache: 'short', config: { ttlMs: 60_000 } });
    await put('short', { ttlMs: 0 });
    expect(await get('short')).toEqual([7]);
    // A write's own TTL past the safe integers stays a typed refusal, and the node serves on.
    expect((await refusal(put('short', { ttlMs: Number.MAX_SAFE_INTEGER }))).code).toBe(ErrorCode.BAD_REQUEST);
    expect((await refusal(put('short', { ttlMs: -1 }))).code).toBe(ErrorCode.BAD_REQUEST);
    expect(await get('short')).toEqual([7]);
  });
});
