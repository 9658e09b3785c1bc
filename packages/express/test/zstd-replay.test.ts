/**
 * A stored `Content-Encoding: zstd` body replayed to a retry that does not accept zstd (real
 * Express app, real grid). Where node:zlib has zstd (Node 22.15+, 23.8+) the replay is decoded,
 * bounded by `maxStoredBodyBytes` as gzip and br are; on a Node without it (20) the replay goes
 * out without its body, `Idempotent-Body-Omitted: true`, as before.
 */
import type { Server } from 'node:http';
import * as zlib from 'node:zlib';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import { listen, rawPost, teardown } from './helpers.js';

const hasZstd = typeof (zlib as { zstdDecompress?: unknown }).zstdDecompress === 'function';

/**
 * A zstd frame (RFC 8878 section 3.1.1) built by hand, so that a Node without a zstd encoder
 * can store one: no content size or checksum, a 128 KiB window, then raw blocks (bytes as they
 * are) and RLE blocks (one byte repeated `count` times, at most 128 KiB).
 */
function zstdFrame(blocks: ({ raw: Buffer } | { byte: number; count: number })[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38])];
  blocks.forEach((b, i) => {
    const rle = 'byte' in b;
    const header = (i === blocks.length - 1 ? 1 : 0) | ((rle ? 1 : 0) << 1) | ((rle ? b.count : b.raw.length) << 3);
    parts.push(Buffer.from([header & 0xff, (header >> 8) & 0xff, header >> 16]), rle ? Buffer.from([b.byte]) : b.raw);
  });
  return Buffer.concat(parts);
}

const text = 'an order, encoded with zstd\n'.repeat(40);
const encoded = zstdFrame([{ raw: Buffer.from(text.slice(0, 100)) }, { raw: Buffer.from(text.slice(100)) }]);
const limit = 64 * 1024;
/** 2.5 MiB of zeros in about a hundred bytes: far past the bound once decoded. */
const bomb = zstdFrame(Array.from({ length: 20 }, () => ({ byte: 0, count: 128 * 1024 })));

let cluster: LocalCluster;
let grid: GridlinkHandle;
let server: Server;
let base: string;
let runs = 0;
const warnings: Record<string, unknown>[] = [];

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  const app = express();
  grid = gridlink(app, { endpoints: cluster.endpoints });
  await grid.ready;
  const mw = dedupe({ required: true, metrics: false, maxStoredBodyBytes: limit, logger: { warn: (_m, f) => void warnings.push(f as Record<string, unknown>) } });
  const send = (body: Buffer) => (_req: express.Request, res: express.Response): void => {
    runs++;
    res.set({ 'Content-Type': 'text/plain', 'Content-Encoding': 'zstd', ETag: '"v1"' }).send(body);
  };
  app.post('/zstd', mw, send(encoded));
  app.post('/zstd-bomb', mw, send(bomb));
  ({ server, base } = await listen(app));
}, 30_000);

afterAll(() => teardown(server, grid, cluster));

/** The first request accepts zstd and gets the bytes as sent; the body is stored with them. */
async function first(path: string, key: string, body: Buffer): Promise<void> {
  const before = runs;
  const r = await rawPost(base, path, { 'idempotency-key': key, 'accept-encoding': 'zstd' });
  expect([r.status, r.headers['content-encoding'], r.body.equals(body), runs]).toEqual([200, 'zstd', true, before + 1]);
  const again = await rawPost(base, path, { 'idempotency-key': key, 'accept-encoding': 'gzip, zstd' });
  expect([again.headers['idempotent-replayed'], again.headers['content-encoding'], again.body.equals(body), runs]).toEqual(['true', 'zstd', true, before + 1]);
}

describe('a stored zstd body replayed to a retry that does not accept zstd', () => {
  it.runIf(hasZstd)('is decoded where node:zlib has zstd: identity body, no Content-Encoding, a weak ETag', async () => {
    expect(encoded.byteLength).toBeLessThan(text.length + 20);
    await first('/zstd', 'z-decoded', encoded);
    for (const ae of [undefined, 'gzip, br', 'zstd;q=0, identity']) {
      const r = await rawPost(base, '/zstd', { 'idempotency-key': 'z-decoded', ...(ae === undefined ? {} : { 'accept-encoding': ae }) });
      expect([ae, r.status, r.headers['idempotent-replayed'], r.headers['content-encoding'], r.headers['idempotent-body-omitted'], r.body.toString()]).toEqual([
        ae,
        200,
        'true',
        undefined,
        undefined,
        text,
      ]);
      expect([r.headers['content-length'], r.headers.etag, r.headers.vary]).toEqual([String(text.length), 'W/"v1"', 'Accept-Encoding']);
    }
  });

  it.runIf(hasZstd)('stops at maxStoredBodyBytes: a small body that inflates past it is replayed without its body', async () => {
    await first('/zstd-bomb', 'z-bomb', bomb);
    const heap = process.memoryUsage().arrayBuffers;
    const r = await rawPost(base, '/zstd-bomb', { 'idempotency-key': 'z-bomb' });
    expect([r.status, r.headers['idempotent-body-omitted'], r.body.length]).toEqual([200, 'true', 0]);
    expect(process.memoryUsage().arrayBuffers - heap).toBeLessThan(2 * 1024 * 1024);
    expect(warnings.at(-1)).toMatchObject({ event: 'dedupe.replay_body_omitted', reason: `larger than maxStoredBodyBytes (${limit}) once decoded` });
  });

  it.runIf(!hasZstd)('is replayed without its body where node:zlib has no zstd (Node 20)', async () => {
    await first('/zstd', 'z-omitted', encoded);
    const r = await rawPost(base, '/zstd', { 'idempotency-key': 'z-omitted', 'accept-encoding': 'gzip, br' });
    expect([r.status, r.headers['idempotent-replayed'], r.headers['idempotent-body-omitted'], r.headers['content-encoding'], r.body.length]).toEqual([200, 'true', 'true', undefined, 0]);
    expect(warnings.at(-1)).toMatchObject({ event: 'dedupe.replay_body_omitted', reason: 'the "zstd" coding cannot be decoded here', contentEncoding: 'zstd' });
  });
});
