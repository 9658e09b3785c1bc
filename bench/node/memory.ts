/**
 * Memory per entry of the node's storage engine, side by side with redis-server, in one run.
 *
 * NodeStore (in this process, run with --expose-gc): 1M entries of 100-byte values under 16-byte
 * encoded keys in 1024 partitions, written through NodeStore.mutate exactly as a primary does;
 * heapUsed + arrayBuffers after GC, before vs after. Measured three ways:
 *   - a client that sends no `ack` (every outcome is held for the 120 s window), right after the
 *     writes and again once the window has passed;
 *   - a client that sends `ack` (sequential: each write acknowledges the previous ones).
 * redis-server (when installed): started on a free 127.0.0.1 port with persistence off, loaded
 * with the same 1M keys and values (SET, pipelined), INFO memory used_memory before vs after,
 * stopped by pid.
 *
 *   node --expose-gc --import tsx bench/node/memory.ts          (MEM_ENTRIES=… to change 1M)
 *
 * Prints a table to stderr and one JSON line to stdout (read by bench/node/index.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { NodeStore } from '@gridlink/node';
import { waitForPort as waitForPortOrThrow } from '@gridlink/testkit';

const N = Number(process.env.MEM_ENTRIES ?? 1_000_000);
const WINDOW = 120_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const used = (): number => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

/** The i-th key: 16 bytes encoded ("k-" + 12 digits as a string key). */
const keyOf = (i: number): Uint8Array => encodeKey(`k-${i.toString().padStart(12, '0')}`);
const value = new Uint8Array(100).fill(1);

function storeRun(withAck: boolean): { afterWrites: number; afterWindow: number; raw: number; entries: number; outcomes: number } {
  let now = 1_000_000;
  const clock = { now: () => now };
  let store: NodeStore | null = new NodeStore({ clock, dedupWindowMs: WINDOW });
  const before = used();
  let raw = 0;
  for (let i = 0; i < N; i++) {
    const key = keyOf(i);
    raw += key.length + value.length;
    const seq = i + 1;
    const payload = withAck ? { cache: 'mem', key, value, seq, ack: seq } : { cache: 'mem', key, value, seq };
    store.mutate(partitionOfBytes(key, 1024), Op.CACHE_PUT, payload, 'bench-session');
  }
  const afterWrites = used() - before;
  const outcomes = store.stats().dedupEntries;
  // Let the outcomes age out of the window and be swept.
  now += WINDOW + 1;
  for (let i = 0; i < 10_000 && store.stats().dedupEntries > 0; i++) store.sweep(100_000);
  const afterWindow = used() - before;
  const entries = store.stats().entries;
  store = null;
  return { afterWrites, afterWindow, raw, entries, outcomes };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on the port (10 s deadline), false if it never does. */
function waitForPort(port: number, child: ChildProcess): Promise<boolean> {
  return waitForPortOrThrow(port, { timeoutMs: 10_000, child }).then(
    () => true,
    () => false,
  );
}

async function redisRun(): Promise<{ perEntry: number; version: string } | null> {
  const port = await freePort();
  let child: ChildProcess;
  try {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
  } catch {
    return null;
  }
  const stop = (): void => {
    if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('exit', stop);
  const spawnFailed = new Promise<false>((resolve) => child.once('error', () => resolve(false)));
  if (!(await Promise.race([waitForPort(port, child), spawnFailed]))) {
    stop();
    return null;
  }
  const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    const info = async (): Promise<Record<string, string>> =>
      Object.fromEntries(
        (await redis.info('all'))
          .split('\r\n')
          .filter((l) => l.includes(':'))
          .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]),
      );
    const before = Number((await info())['used_memory']);
    const valueBuf = Buffer.from(value);
    for (let i = 0; i < N; i += 10_000) {
      const p = redis.pipeline();
      for (let j = i; j < Math.min(N, i + 10_000); j++) p.set(Buffer.from(keyOf(j)), valueBuf);
      await p.exec();
    }
    const all = await info();
    return { perEntry: (Number(all['used_memory']) - before) / N, version: all['redis_version'] ?? '?' };
  } finally {
    redis.disconnect();
    stop();
    process.removeListener('exit', stop);
  }
}

const noAck = storeRun(false);
const ack = storeRun(true);
const redis = await redisRun();
const raw = noAck.raw / noAck.entries;
const row = (state: string, bytes: number): string => `| ${state} | ${Math.round(bytes)} | ${Math.round(raw)} | ${(bytes / raw).toFixed(2)}× |`;
const lines = [
  `Memory per entry, ${N.toLocaleString('en-US')} entries of 100 B values under 16 B keys (raw ${Math.round(raw)} B):`,
  '',
  '| state | bytes/entry | raw key+value | overhead |',
  '| --- | --- | --- | --- |',
  row('NodeStore, client without ack, right after the writes', noAck.afterWrites / noAck.entries),
  row('NodeStore, client without ack, after the 120 s window', noAck.afterWindow / noAck.entries),
  row('NodeStore, client sending ack, right after the writes', ack.afterWrites / ack.entries),
  redis === null ? '| redis-server | not installed | | |' : row(`redis-server ${redis.version} (used_memory)`, redis.perEntry),
  '',
  `(outcomes held right after the writes: ${noAck.outcomes.toLocaleString('en-US')} without ack, ${ack.outcomes} with ack)`,
];
process.stderr.write(lines.join('\n') + '\n');
process.stdout.write(
  JSON.stringify({
    entries: noAck.entries,
    rawBytes: noAck.raw,
    withDedup: noAck.afterWrites,
    settled: noAck.afterWindow,
    withAck: ack.afterWrites,
    outcomesWithAck: ack.outcomes,
    redisPerEntry: redis?.perEntry ?? null,
  }) + '\n',
);
