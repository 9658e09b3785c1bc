/**
 * Where a workload's garbage comes from: starts bench/node/cluster-gc.ts, runs puts or gets
 * (ALLOC_OP=put|get, ALLOC_SIZE bytes, ALLOC_INFLIGHT) under a sampling heap profile that keeps
 * collected objects, and prints the allocation sites by self bytes per op.
 *
 *   ALLOC_OP=put ALLOC_SIZE=64 npx tsx bench/node/alloc-sites.ts [profile-file]
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { table } from '../shared/measure.js';
import { benchKeys, fixedCount, startGcCluster, wireOps } from './load.js';
import { WireClient } from './wire-client.js';

const file = resolve(process.argv[2] ?? 'alloc.heapprofile');
const opName = process.env.ALLOC_OP ?? 'put';
const size = Number(process.env.ALLOC_SIZE ?? 64);
const inFlight = Number(process.env.ALLOC_INFLIGHT ?? 256);
const OPS = Number(process.env.ALLOC_OPS ?? 20_000);
const keys = benchKeys(10_000);

const gc = await startGcCluster();
const client = new WireClient(gc.endpoints);
await client.connect();
const ops = wireOps(client, 'a', keys);
const op = opName === 'get' ? ops.get : ops.put(new Uint8Array(size).fill(7));
await fixedCount(op, 30_000, inFlight); // prefill and warm-up
await gc.command('sample-start');
await fixedCount(op, OPS, inFlight);
await gc.command(`sample-stop ${file}`);
client.close();
await gc.stop();

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  selfSize: number;
  children: HeapNode[];
}
const prof = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode };
const self = new Map<string, number>();
let total = 0;
const walk = (n: HeapNode, parent: string): void => {
  const cf = n.callFrame;
  const here = `${cf.functionName || '(anon)'} ${cf.url.replace(/^.*\/(packages|node_modules)\//, '$1/').replace(/^node:internal\//, '')}:${cf.lineNumber + 1}`;
  // Native allocators (Buffer, Promise...) are attributed with their caller.
  const name = cf.url === '' ? `${here} ← ${parent}` : here;
  if (n.selfSize > 0) {
    self.set(name, (self.get(name) ?? 0) + n.selfSize);
    total += n.selfSize;
  }
  for (const c of n.children) walk(c, here);
};
walk(prof.head, '');
console.log(`${opName} ${size} B ×${inFlight}: ${Math.round(total / OPS)} sampled bytes/op`);
const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.ALLOC_TOP ?? 40));
console.log(table([['site', 'bytes/op', '%'], ...top.map(([k, v]) => [k, Math.round(v / OPS), ((100 * v) / total).toFixed(1)])]));
