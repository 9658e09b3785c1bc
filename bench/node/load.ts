/**
 * What the node benches share: the key set, put/get as @gridlink/client sends them (through the
 * bare WireClient), a fixed-count closed loop, and the line-driven LocalCluster child of the
 * allocation benches (bench/node/cluster-gc.ts).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeKey } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import type { WireClient } from './wire-client.js';

const here = dirname(fileURLToPath(import.meta.url));

/** `count` encoded keys, `key-00000000` on. */
export function benchKeys(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => encodeKey(`key-${i.toString().padStart(8, '0')}`));
}

/**
 * put(value) and get over `keys` (op i uses a spread-out key). Puts carry `ack`, the lowest seq
 * still in flight, as @gridlink/client's do: the node then forgets settled outcomes at once
 * instead of holding them for the dedup window.
 */
export function wireOps(client: WireClient, cache: string, keys: readonly Uint8Array[]): { put(value: Uint8Array): (i: number) => Promise<unknown>; get: (i: number) => Promise<unknown> } {
  let low = 1;
  const settled = new Set<number>();
  const keyOf = (i: number): Uint8Array => keys[(i * 7919) % keys.length]!;
  return {
    put: (value) => async (i) => {
      const key = keyOf(i);
      const seq = client.nextSeq();
      try {
        return await client.call(Op.CACHE_PUT, { cache, key, value, seq, ack: low }, key);
      } finally {
        settled.add(seq);
        while (settled.delete(low)) low++;
      }
    },
    get: (i) => {
      const key = keyOf(i);
      return client.call(Op.CACHE_GET, { cache, key }, key);
    },
  };
}

/** Runs exactly `count` ops with `inFlight` loops; returns the latency samples in µs. */
export async function fixedCount(op: (i: number) => Promise<unknown>, count: number, inFlight: number): Promise<number[]> {
  const samples: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      await op(i);
      samples.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, () => worker()));
  return samples;
}

/** bench/node/cluster-gc.ts in its own process: one command per line, one answer line each. */
export async function startGcCluster(): Promise<{ endpoints: string[]; command(cmd: string): Promise<string>; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'cluster-gc.ts')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(proc, 'exit');
  process.on('exit', () => proc.kill('SIGKILL'));
  const lines = createInterface({ input: proc.stdout });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const nextLine = (): Promise<string> => new Promise((resolve) => waiting.push(resolve));
  const ready = JSON.parse(await nextLine()) as { endpoints: string[] };
  return {
    endpoints: ready.endpoints,
    command(cmd) {
      const reply = nextLine();
      proc.stdin.write(`${cmd}\n`);
      return reply;
    },
    async stop() {
      proc.stdin.write('stop\n');
      await exited;
    },
  };
}
