/**
 * A batch of replication records as it leaves the primary (ADR 0077): plain puts travel as
 * writers that the frame encoder writes straight into the frame, other records in the map form;
 * a batch holding both goes through the general encoder with the writers turned into bytes. Either
 * way the frame decodes, on the backup, to one message per record, in order.
 */
import { describe, expect, it } from 'vitest';
import { decode, encode } from '@msgpack/msgpack';
import { FrameKind, Op, decodeFrame, encodeFrame } from '@gridlink/protocol';
import { RecordBatches, type BatchDeps } from '../src/partitions/batches.js';
import { InFlightWrites, type PartState } from '../src/partitions/table.js';
import { decodeReplicate } from '../src/peers/replicate-codec.js';
import { EMPTY } from '../src/store/cache-ops.js';
import type { ReplicationRecord } from '../src/store/index.js';

const put = (i: number): ReplicationRecord => ({
  v: 1,
  counter: i,
  at: 1000 + i,
  effects: [{ t: 'put', cache: 'c', key: Uint8Array.of(i), value: new Uint8Array(600).fill(i), expireAt: 0 }],
  dedup: { session: 's', seq: i, op: Op.CACHE_PUT, result: EMPTY },
});
const remove = (i: number): ReplicationRecord => ({ v: 1, counter: i, at: 1000 + i, effects: [{ t: 'del', cache: 'c', key: Uint8Array.of(i) }], dedup: null });

/** Sends one batch of `records` to target b and returns the frame as the wire would carry it. */
async function frameOf(records: ReplicationRecord[]): Promise<{ frame: Uint8Array; payload: unknown }> {
  let sent: unknown;
  const deps = {
    opts: { replicationTimeoutMs: 1000 },
    metrics: { replicationSeconds: { observe() {} }, replication: {} },
    view: { topo: null, topologyVersion: () => 5, isTarget: () => true, raceTopology: () => new Promise(() => {}) },
    peers: { peer: () => ({ send: (_op: Op, payload: unknown) => (sent = payload) }) },
    id: 'a',
    continueRecord: () => Promise.resolve(),
    ensureClean: () => Promise.resolve(),
    missed() {},
    acknowledgedWithout() {},
  } as unknown as BatchDeps;
  const batches = new RecordBatches(deps);
  const st = { inflight: new InFlightWrites() } as unknown as PartState;
  for (const [i, r] of records.entries()) batches.add(i, { id: 'b', epoch: 'e1' }, r, st, { complete() {} });
  await new Promise((r) => setImmediate(r));
  expect(sent).toBeDefined();
  return { frame: encodeFrame({ kind: FrameKind.REQUEST, op: Op.PEER_REPLICATE, id: 1, flags: 0, payload: sent }), payload: sent };
}

/** The frame's records as the backup reads them: the binary ones decoded, the map ones as plain data. */
function received(frame: Uint8Array): unknown[] {
  const f = decodeFrame(frame) as { payload: { batch: unknown[]; compactAck: boolean } };
  expect(f.payload.compactAck).toBe(true);
  return f.payload.batch.map((m) => {
    if (!(m instanceof Uint8Array)) return m;
    const d = decodeReplicate(m);
    return { p: d.p, v: d.v, from: d.from, epoch: d.epoch, counter: d.rec!.counter };
  });
}

describe('RecordBatches: the frame a batch of records travels in', () => {
  it('plain puts alone: writers in the payload, one binary record each in the frame', async () => {
    const { frame, payload } = await frameOf([put(1), put(2), put(3)]);
    expect((payload as { batch: unknown[] }).batch.every((m) => !(m instanceof Uint8Array) && typeof (m as { writeTo?: unknown }).writeTo === 'function')).toBe(true);
    expect(received(frame)).toEqual([1, 2, 3].map((i) => ({ p: i - 1, v: 5, from: 'a', epoch: 'e1', counter: i })));
  });

  it('puts next to a map-form record: the writers become bytes, every record arrives in order', async () => {
    const { frame, payload } = await frameOf([put(1), remove(2), put(3)]);
    expect((payload as { batch: unknown[] }).batch.map((m) => m instanceof Uint8Array)).toEqual([true, false, true]);
    const got = received(frame);
    expect(got[0]).toEqual({ p: 0, v: 5, from: 'a', epoch: 'e1', counter: 1 });
    expect(got[1]).toEqual(decode(encode({ p: 1, v: 5, from: 'a', epoch: 'e1', rec: remove(2) })));
    expect(got[2]).toEqual({ p: 2, v: 5, from: 'a', epoch: 'e1', counter: 3 });
  });
});
