/**
 * Where a workload's garbage comes from: starts bench/node/cluster-gc.ts, runs puts or gets
 * (ALLOC_OP=put|get, ALLOC_SIZE bytes, ALLOC_INFLIGHT) under a sampling heap profile that keeps
 * collected objects, and prints the allocation sites by self bytes per op.
 *
 *   ALLOC_OP=put ALLOC_SIZE=64 npx tsx bench/node/alloc-sites.ts [profile-file]
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeKey } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { table } from '../shared/measure.js';
import { WireClient } from './wire-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const file = resolve(process.argv[2] ?? 'alloc.heapprofile');
const opName = process.env.ALLOC_OP ?? 'put';
const size = Number(process.env.ALLOC_SIZE ?? 64);
const inFlight = Number(process.env.ALLOC_INFLIGHT ?? 256);
const OPS = Number(process.env.ALLOC_OPS ?? 20_000);
const keys = Array.from({ length: 10_000 }, (_, i) => encodeKey(`key-${i.toString().padStart(8, '0')}`));

const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'cluster-gc.ts')], { stdio: ['pipe', 'pipe', 'inherit'] });
const exited = once(proc, 'exit');
process.on('exit', () => proc.kill('SIGKILL'));
const lines = createInterface({ input: proc.stdout });
const waiting: ((line: string) => void)[] = [];
lines.on('line', (line) => waiting.shift()?.(line));
const nextLine = (): Promise<string> => new Promise((r) => waiting.push(r));
const command = async (cmd: string): Promise<string> => {
  const reply = nextLine();
  proc.stdin.write(`${cmd}\n`);
  return reply;
};
const ready = JSON.parse(await nextLine()) as { endpoints: string[] };
const client = new WireClient(ready.endpoints);
await client.connect();
const value = new Uint8Array(size).fill(7);
let low = 1;
const settled = new Set<number>();
const op = async (i: number): Promise<unknown> => {
  const key = keys[(i * 7919) % keys.length]!;
  if (opName === 'get') return client.call(Op.CACHE_GET, { cache: 'a', key }, key);
  const seq = client.nextSeq();
  try {
    return await client.call(Op.CACHE_PUT, { cache: 'a', key, value, seq, ack: low }, key);
  } finally {
    settled.add(seq);
    while (settled.delete(low)) low++;
  }
};
async function fixedCount(count: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, () => worker()));
}
await fixedCount(30_000); // prefill and warm-up
await command('sample-start');
await fixedCount(OPS);
await command(`sample-stop ${file}`);
client.close();
proc.stdin.write('stop\n');
await exited;

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
