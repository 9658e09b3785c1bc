/**
 * A LocalCluster (3 nodes, backups = 1) in this process that also counts what it allocates: a
 * V8 GC profiler runs from start, and each `mark` line on stdin is answered with one JSON line of
 * cumulative totals — bytes allocated (heap growth between collections, summed, plus the growth
 * since the last one), GC pause ms, collections, and this process's CPU µs. Bytes allocated per
 * op barely depend on how busy the machine is, unlike CPU time. `sample-start` and
 * `sample-stop <file>` record a sampling heap profile that keeps collected objects too (where the
 * garbage comes from; open it in Chrome DevTools or read it with alloc-sites.ts). `stop` ends it.
 * CLUSTER_FROM_DIST=1 runs the built packages (run the build first) instead of the sources.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createInterface } from 'node:readline';
import v8 from 'node:v8';
import type { LocalCluster as LocalClusterType } from '@gridlink/node';

interface GcStat {
  cost: number;
  beforeGC: { heapStatistics: { usedHeapSize: number } };
  afterGC: { heapStatistics: { usedHeapSize: number } };
}

// CLUSTER_FROM_DIST=1: the built package (profiles then name real source lines through its map).
const distPath: string = '../../packages/node/dist/index.js';
const { LocalCluster } = (process.env.CLUSTER_FROM_DIST === '1' ? await import(distPath) : await import('@gridlink/node')) as { LocalCluster: typeof LocalClusterType };
const cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 1024 });
let profiler = new v8.GCProfiler();
profiler.start();
let allocated = 0;
let gcMs = 0;
let gcs = 0;
let lastUsed = v8.getHeapStatistics().used_heap_size;

/** Folds the collections since the last call into the totals and restarts the profiler. */
function collect(): void {
  const data = profiler.stop() as unknown as { statistics: GcStat[] } | undefined;
  for (const s of data?.statistics ?? []) {
    allocated += Math.max(0, s.beforeGC.heapStatistics.usedHeapSize - lastUsed);
    lastUsed = s.afterGC.heapStatistics.usedHeapSize;
    gcMs += s.cost / 1000;
    gcs++;
  }
  const used = v8.getHeapStatistics().used_heap_size;
  allocated += Math.max(0, used - lastUsed);
  lastUsed = used;
  profiler = new v8.GCProfiler();
  profiler.start();
}

const session = new Session();
session.connect();
process.stdout.write(`${JSON.stringify({ endpoints: cluster.endpoints, nodeIds: cluster.nodeIds })}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === 'mark') {
    collect();
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ allocated, gcMs, gcs, cpuUs: cpu.user + cpu.system })}\n`);
  } else if (line.trim() === 'sample-start') {
    await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
    process.stdout.write('ok\n');
  } else if (line.startsWith('sample-stop ')) {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    writeFileSync(line.slice('sample-stop '.length).trim(), JSON.stringify(profile));
    process.stdout.write('ok\n');
  } else if (line.trim() === 'stop') break;
}
profiler.stop();
await cluster.stop();
process.exit(0);
