/**
 * Planned vs unplanned: the longest write stall a client sees on the partitions a node was
 * primary of, when that node is stopped gracefully (it hands its primaryships to caught-up
 * backups first) versus killed (the others wait for its lease to run out). Embedded 3-node
 * cluster (backups = 1), 16 sequential writers through @gridlink/client, each node in turn.
 *
 *   pnpm bench handoff
 */
import { partitionOf } from '@gridlink/affinity';
import { GridClient, bytesSerializer } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { table } from '../shared/measure.js';

const P = 64;
const WRITERS = 16;

async function main(): Promise<void> {
  const cluster = await LocalCluster.start({ nodes: 3, partitions: P, backups: 1, autoAdjust: { enabled: false } });
  const client = await GridClient.connect({
    endpoints: cluster.endpoints,
    heartbeatInterval: 100,
    heartbeatTimeout: 600,
    requestTimeout: 1000,
    operationTimeout: 20_000,
    reconnect: { minDelay: 20, maxDelay: 300 },
  });
  const cache = client.cache<string, Uint8Array>('bench', { serializer: bytesSerializer });
  const keys = Array.from({ length: WRITERS }, (_, i) => `w-${i}`);
  const acks: { key: string; at: number }[] = [];
  let failures = 0;
  let running = true;
  const payload = new Uint8Array(64);
  const loops = keys.map(async (key) => {
    while (running) {
      try {
        await cache.put(key, payload);
        acks.push({ key, at: Date.now() });
      } catch {
        failures++;
      }
    }
  });

  /** Longest gap between acknowledged writes to `ks` in [from, to]. */
  const stall = (ks: string[], from: number, to: number): number => {
    let last = from;
    let worst = 0;
    for (const a of acks) {
      if (a.at < from || a.at > to || !ks.includes(a.key)) continue;
      worst = Math.max(worst, a.at - last);
      last = a.at;
    }
    return Math.max(worst, to - last);
  };
  const settle = async (): Promise<void> => {
    await cluster.waitForStable(30_000);
    const t = Date.now();
    while (acks.filter((a) => a.at > t).length < 200) await new Promise((r) => setImmediate(r));
  };

  const rows: (string | number)[][] = [['mode', 'node', 'keys on it', 'longest write stall ms', 'failed ops']];
  await settle();
  for (const mode of ['graceful stop', 'kill'] as const) {
    for (const id of [...cluster.nodeIds]) {
      const affected = keys.filter((k) => cluster.primaryOf(partitionOf(k, P)) === id);
      const f0 = failures;
      const from = Date.now();
      if (mode === 'kill') await cluster.kill(id);
      else await cluster.stopNode(id);
      // Wait until every affected key was written again, then a little more.
      for (;;) {
        const done = affected.every((k) => acks.some((a) => a.key === k && a.at > from + 1));
        if (done) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      const to = Date.now() + 100;
      while (Date.now() < to) await new Promise((r) => setTimeout(r, 5));
      rows.push([mode, id, affected.length, stall(affected, from, to), failures - f0]);
      await cluster.restart(id);
      await settle();
    }
  }
  running = false;
  await Promise.all(loops);
  await client.close();
  await cluster.stop();
  console.log(table(rows));
}

await main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
