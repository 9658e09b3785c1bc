/**
 * Heap bytes allocated, GC time and CPU time per put and per get in a LocalCluster (3 nodes,
 * backups = 1) in its own process (bench/node/cluster-gc.ts), for 64 B and 1 KiB values at 256
 * and 1 in flight. Bytes allocated per op is the steadiest measure of per-op garbage on a busy
 * machine (it does not depend on scheduling); CPU µs/op is printed beside it. Median over rounds.
 *
 *   npx tsx bench/node/alloc-per-op.ts
 *   ALLOC_OPS=20000 ALLOC_ROUNDS=3 ALLOC_SIZES=64,1024 npx tsx bench/node/alloc-per-op.ts
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeKey } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { percentile, table } from '../shared/measure.js';
import { WireClient } from './wire-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const OPS = Number(process.env.ALLOC_OPS ?? 20_000);
const LATENCY_OPS = Number(process.env.ALLOC_LATENCY_OPS ?? 2_000);
const ROUNDS = Number(process.env.ALLOC_ROUNDS ?? 3);
const SIZES = (process.env.ALLOC_SIZES ?? '64,1024').split(',').map(Number);
const KEYS = 10_000;
const keys = Array.from({ length: KEYS }, (_, i) => encodeKey(`key-${i.toString().padStart(8, '0')}`));
const cache = 'alloc';

interface Mark {
  allocated: number;
  gcMs: number;
  gcs: number;
  cpuUs: number;
}

const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'cluster-gc.ts')], { stdio: ['pipe', 'pipe', 'inherit'] });
const exited = once(proc, 'exit');
process.on('exit', () => proc.kill('SIGKILL'));
const lines = createInterface({ input: proc.stdout });
const waiting: ((line: string) => void)[] = [];
lines.on('line', (line) => waiting.shift()?.(line));
const nextLine = (): Promise<string> => new Promise((resolve) => waiting.push(resolve));
const ready = JSON.parse(await nextLine()) as { endpoints: string[] };
const mark = async (): Promise<Mark> => {
  const reply = nextLine();
  proc.stdin.write('mark\n');
  return JSON.parse(await reply) as Mark;
};

async function fixedCount(op: (i: number) => Promise<unknown>, count: number, inFlight: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, () => worker()));
}

const client = new WireClient(ready.endpoints);
const rows: (string | number)[][] = [['value', 'op', 'in flight', 'bytes alloc/op', 'GC µs/op', 'CPU µs/op']];
try {
  await client.connect();
  let low = 1;
  const settled = new Set<number>();
  for (const size of SIZES) {
    const value = new Uint8Array(size).fill(7);
    const put = async (i: number): Promise<unknown> => {
      const key = keys[(i * 7919) % KEYS]!;
      const seq = client.nextSeq();
      try {
        return await client.call(Op.CACHE_PUT, { cache, key, value, seq, ack: low }, key);
      } finally {
        settled.add(seq);
        while (settled.delete(low)) low++;
      }
    };
    const get = (i: number): Promise<unknown> => {
      const key = keys[(i * 7919) % KEYS]!;
      return client.call(Op.CACHE_GET, { cache, key }, key);
    };
    await fixedCount(put, KEYS * 2, 64);
    await fixedCount(get, KEYS, 64);
    const res = new Map<string, { a: number[]; g: number[]; c: number[] }>();
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, op] of [
        ['put', put],
        ['get', get],
      ] as const) {
        for (const inFlight of [256, 1]) {
          const n = inFlight === 1 ? LATENCY_OPS : OPS;
          const m0 = await mark();
          await fixedCount(op, n, inFlight);
          const m1 = await mark();
          const k = `${name} ${inFlight}`;
          const e = res.get(k) ?? { a: [], g: [], c: [] };
          e.a.push((m1.allocated - m0.allocated) / n);
          e.g.push(((m1.gcMs - m0.gcMs) * 1000) / n);
          e.c.push((m1.cpuUs - m0.cpuUs) / n);
          res.set(k, e);
        }
      }
    }
    for (const [k, e] of res) {
      const [name, inFlight] = k.split(' ');
      rows.push([size, name!, inFlight!, Math.round(percentile(e.a, 50)), percentile(e.g, 50).toFixed(1), percentile(e.c, 50).toFixed(1)]);
    }
  }
  console.log(`### Cluster allocation and CPU per op (3 nodes in one process, backups = 1, median of ${ROUNDS} rounds)\n`);
  console.log(table(rows));
} finally {
  client.close();
  proc.stdin.write('stop\n');
  await exited;
}
