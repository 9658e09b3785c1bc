/**
 * CPU cost of one replication record on the wire between nodes, map form (MessagePack map, as
 * before ADR 0027) against the compact binary form, measured in one process, alternating, in CPU
 * time (process.cpuUsage, so time the process spends descheduled on a loaded machine does not
 * count). Each round sends batches of BATCH records (one frame per batch, as the peer client
 * does within a tick) through encode → decode → the record the backup applies.
 *
 *   npx tsx bench/node/replicate-codec.ts        (ROUNDS=…, BATCH=…, RECORDS=…)
 */
import { decode, encode } from '@msgpack/msgpack';
import { encodeKey } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { decodeReplicate, encodeReplicate } from '@gridlink/node/internal';
import { table } from '../shared/measure.js';

const rounds = Number(process.env.ROUNDS ?? 7);
const batch = Number(process.env.BATCH ?? 16);
const records = Number(process.env.RECORDS ?? 200_000);
const EMPTY_RESULT = {};

type Rec = Parameters<typeof encodeReplicate>[4];
function records64(n: number, valueSize: number): Rec[] {
  const value = new Uint8Array(valueSize).fill(7);
  return Array.from({ length: n }, (_, i) => ({
    v: 1 as const,
    counter: i + 1,
    at: Date.now(),
    effects: [{ t: 'put' as const, cache: 'c', key: encodeKey(`key-${i}`), value, expireAt: 0 }],
    dedup: { session: '0b7f5a3c-6a1e-4f7e-9d43-5b8f1e2c9a10', seq: i + 1, op: Op.CACHE_PUT, result: EMPTY_RESULT, ack: i },
  }));
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function run(recs: Rec[], binary: boolean): number {
  const from = 'node-1a2b3c';
  const epoch = '5d1e0f4a-2b3c-4d5e-8f90-1a2b3c4d5e6f';
  let sink = 0;
  const t0 = cpuUs();
  for (let i = 0; i < recs.length; i += batch) {
    const msgs: unknown[] = [];
    for (let j = i; j < Math.min(recs.length, i + batch); j++) {
      const rec = recs[j]!;
      msgs.push(binary ? encodeReplicate(7, 42, from, epoch, rec)! : { p: 7, v: 42, from, epoch, rec });
    }
    const got = (decode(encode({ batch: msgs })) as { batch: unknown[] }).batch;
    for (const m of got) {
      const msg = binary ? decodeReplicate(m as Uint8Array) : (m as { rec: { counter: number } });
      sink += msg.rec!.counter;
    }
  }
  const us = cpuUs() - t0;
  if (sink < 0) console.log(sink);
  return (us * 1000) / recs.length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const rows: (string | number)[][] = [['value', 'map form ns/record', 'binary ns/record', 'binary / map', 'map bytes', 'binary bytes']];
for (const size of [64, 1024]) {
  const recs = records64(records, size);
  const map: number[] = [];
  const bin: number[] = [];
  run(recs.slice(0, 20_000), false);
  for (let r = 0; r < rounds; r++) {
    map.push(run(recs, false));
    bin.push(run(recs, true));
  }
  const one = recs[0]!;
  const mapBytes = encode({ p: 7, v: 42, from: 'node-1a2b3c', epoch: '5d1e0f4a-2b3c-4d5e-8f90-1a2b3c4d5e6f', rec: one }).length;
  const binBytes = encodeReplicate(7, 42, 'node-1a2b3c', '5d1e0f4a-2b3c-4d5e-8f90-1a2b3c4d5e6f', one)?.length ?? NaN;
  rows.push([`${size} B`, Math.round(median(map)), Math.round(median(bin)), (median(bin) / median(map)).toFixed(2), mapBytes, binBytes]);
}
console.log(`medians of ${rounds} alternating rounds, ${records} records in batches of ${batch}, CPU time`);
console.log(table(rows));
