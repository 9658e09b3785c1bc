/**
 * What one full garbage collection does to the cost of an operation afterwards (ADR 0075).
 *
 * 1. Per-request bookkeeping alone: 256 entries held, one added and one removed per operation
 *    (request ids), in a V8 `Map` and in @gridlink/protocol's `IntMap`; CPU per operation in
 *    windows before and after one forced full collection.
 * 2. @gridlink/client against three gridlink-node processes (one nats-server, backups = 1): put
 *    at 256 in flight, the client process's CPU per operation in windows before and after one
 *    forced full collection of the client process.
 *
 *   npx tsx bench/client/after-full-gc.ts
 *   PART=1 npx tsx bench/client/after-full-gc.ts       # only the bookkeeping
 *   WINDOWS=5 SECONDS=2 npx tsx bench/client/after-full-gc.ts
 *
 * (From the repository root with TSX_TSCONFIG_PATH=bench/tsconfig.json after `pnpm build`, so
 * that the built packages are measured.)
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GridClient, bytesSerializer } from '@gridlink/client';
import { IntMap } from '@gridlink/protocol';
import { ProcessCluster } from '@gridlink/testkit';
import { table } from '../shared/measure.js';

setFlagsFromString('--expose-gc');
const fullGc = runInNewContext('gc') as () => void;
const WINDOWS = Number(process.env.WINDOWS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 1.5);
const PART = process.env.PART;

const cpuUs = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

interface Row {
  what: string;
  before: number[];
  after: number[];
}

// 1. Bookkeeping alone: what a connection keeps per request in flight, in a table that lives as
// long as the connection. Two functions, not one taking either table: each call site then sees
// one kind of table, as the client's code does.
interface Held {
  id: number;
  expiresAt: number;
  op: number;
  handler: { id: number } | null;
}
const held = (id: number): Held => ({ id, expiresAt: id + 30_000, op: 2, handler: { id } });
// Each table is made right after a full collection, so it starts young, as a busy connection's
// table is between full collections; the windows after the next full collection show the change.
let viaMap = new Map<number, Held>();
let viaIntMap = new IntMap<Held>();
let mapNext = 0;
let intNext = 0;
function freshMap(): void {
  viaMap = new Map<number, Held>();
  for (mapNext = 0; mapNext < 256; mapNext++) viaMap.set(mapNext, held(mapNext));
}
function freshIntMap(): void {
  viaIntMap = new IntMap<Held>();
  for (intNext = 0; intNext < 256; intNext++) viaIntMap.set(intNext, held(intNext));
}
function churnMap(ms: number): number {
  const t0 = cpuUs();
  const end = Date.now() + ms;
  let ops = 0;
  while (Date.now() < end) {
    for (let k = 0; k < 1000; k++, mapNext++) {
      viaMap.set(mapNext, held(mapNext));
      viaMap.delete(mapNext - 256);
    }
    ops += 1000;
  }
  return (cpuUs() - t0) / ops;
}
function churnIntMap(ms: number): number {
  const t0 = cpuUs();
  const end = Date.now() + ms;
  let ops = 0;
  while (Date.now() < end) {
    for (let k = 0; k < 1000; k++, intNext++) {
      viaIntMap.set(intNext, held(intNext));
      viaIntMap.delete(intNext - 256);
    }
    ops += 1000;
  }
  return (cpuUs() - t0) / ops;
}

const rows: Row[] = [];
if (PART === undefined || PART === '1') {
  for (const [kind, fresh, churn] of [
    ['Map', freshMap, churnMap],
    ['IntMap', freshIntMap, churnIntMap],
  ] as const) {
    fresh();
    churn(200); // warm-up: optimized code for the loop
    fullGc();
    fresh();
    const before: number[] = [];
    const after: number[] = [];
    for (let w = 0; w < WINDOWS; w++) before.push(churn(SECONDS * 1000));
    fullGc();
    for (let w = 0; w < WINDOWS; w++) after.push(churn(SECONDS * 1000));
    rows.push({ what: `${kind}: 256 held, one set + one delete per op`, before, after });
  }
}

// 2. The client against node processes.
if (PART === undefined || PART === '2') {
  const grid = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 64 });
  try {
    const client = await GridClient.connect({ endpoints: grid.endpoints });
    const cache = client.cache<string, Uint8Array>('after-full-gc', { serializer: bytesSerializer });
    const value = new Uint8Array(64).fill(7);
    const keyOf = (i: number): string => `key-${(i % 10_000).toString().padStart(8, '0')}`;
    const window = async (ms: number): Promise<number> => {
      let stop = false;
      let ops = 0;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (!stop) {
          await cache.put(keyOf(next++), value);
          ops++;
        }
      };
      const t0 = cpuUs();
      const workers = Array.from({ length: 256 }, worker);
      await new Promise((r) => setTimeout(r, ms));
      stop = true;
      await Promise.all(workers);
      return (cpuUs() - t0) / ops;
    };
    await window(3000); // warm-up: V8 optimizes what runs only after seconds of load
    const before: number[] = [];
    const after: number[] = [];
    for (let w = 0; w < WINDOWS; w++) before.push(await window(SECONDS * 1000));
    fullGc();
    for (let w = 0; w < WINDOWS; w++) after.push(await window(SECONDS * 1000));
    rows.push({ what: '@gridlink/client put 64 B, 256 in flight (client process)', before, after });
    await client.close();
  } finally {
    await grid.close();
  }
}

const f = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' / ');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`### CPU µs per operation, ${WINDOWS} windows of ${SECONDS} s before and after one full collection\n`);
console.log(
  table([
    ['workload', 'before', 'after', 'after ÷ before (medians)'],
    ...rows.map((r) => [r.what, f(r.before), f(r.after), `${(median(r.after) / median(r.before)).toFixed(2)}×`]),
  ]),
);
