/**
 * 1,000 jobs across three worker processes while workers are SIGKILLed and restarted and one grid
 * node is killed: every job completes once, each effect is applied once at the fenced sink, no job
 * is left pending, and the time from each kill to its jobs resuming elsewhere is recorded.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import type { GridClient } from '@gridlink/client';
import type { NatsConnection } from '@nats-io/transport-node';
import { JobQueue } from '@gridlink/messaging';
import { Child, NatsServer, waitUntil } from './helpers/processes.js';
import { FencedSink } from './helpers/sink.js';
import { connectGrid, connectNats } from './helpers/env.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const WORKER = fileURLToPath(new URL('./fixtures/chaos-worker.ts', import.meta.url));
const JOBS = 1000;

interface Claimed {
  ev: 'claimed';
  w: string;
  jobId: string;
  fencingToken: number;
  takenOverFrom: string | null;
  at: number;
}
const isReady = (l: unknown): l is { ev: 'ready' } => (l as { ev?: string }).ev === 'ready';
const isClaimed = (l: unknown): l is Claimed => (l as { ev?: string }).ev === 'claimed';

describe('single jobs survive their workers (chaos)', () => {
  let cluster: LocalCluster;
  let nats: NatsServer;
  let sink: FencedSink;
  let grid: GridClient | undefined;
  let nc: NatsConnection | undefined;
  let queue: JobQueue | undefined;
  const children: Child[] = [];

  beforeAll(async () => {
    [cluster, nats, sink] = await Promise.all([
      LocalCluster.start({ nodes: 3, backups: 1, partitions: 64 }),
      NatsServer.start(),
      FencedSink.start(),
    ]);
  });
  afterAll(async () => {
    for (const c of children) await c.kill();
    await queue?.close();
    await nc?.close();
    await grid?.close();
    await sink?.close();
    await nats?.stop();
    await cluster?.stop();
  });

  it('1,000 jobs, three workers killed and restarted at random, one grid node killed', async () => {
    grid = await connectGrid(cluster.endpoints);
    nc = await connectNats(nats.url);
    queue = new JobQueue({ grid, nats: nc, queue: 'chaos' });
    const endpoints = cluster.endpoints.join(',');
    let generation = 0;
    const spawnWorker = (slot: number): Child => {
      const id = `w${slot}-g${++generation}`;
      const c = Child.spawn(WORKER, { GRID_ENDPOINTS: endpoints, NATS_URL: nats.url, SINK_URL: sink.url, WORKER_ID: id, QUEUE: 'chaos', STEP_MS: '2', CONCURRENCY: '16' }, id, ROOT);
      children.push(c);
      return c;
    };
    const slots = [spawnWorker(1), spawnWorker(2), spawnWorker(3)];
    await Promise.all(slots.map((c) => c.waitFor(isReady, 30_000)));

    for (let i = 0; i < JOBS; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, JOBS - i) }, (_, j) => queue!.submit(`job-${i + j}`, { n: i + j })));
    }

    // Kill a random worker holding jobs at each progress mark; kill one grid node at 50%.
    const kills: { worker: string; at: number }[] = [];
    const marks = [0.15, 0.35, 0.55, 0.75];
    let nodeKilled = false;
    for (const mark of marks) {
      await waitUntil(() => sink.applied.size >= JOBS * mark, 40_000, `${mark * 100}% of the jobs applied`);
      if (!nodeKilled && mark >= 0.4) {
        nodeKilled = true;
        await cluster.kill(cluster.nodeIds[Math.floor(Math.random() * cluster.nodeIds.length)]!);
      }
      // A random worker among those that are ready and hold jobs right now.
      const holding = (c: Child): number => {
        const open = new Set<string>();
        for (const l of c.lines) {
          const e = l as { ev?: string; jobId?: string };
          if (e.ev === 'claimed' && e.jobId) open.add(e.jobId);
          else if (e.jobId && (e.ev === 'completed' || e.ev === 'failed' || e.ev === 'lost' || e.ev === 'stale')) open.delete(e.jobId);
        }
        return open.size;
      };
      await waitUntil(() => slots.some((c) => c.lines.some(isReady) && holding(c) > 0), 20_000, 'a worker holding jobs');
      const eligible = slots.map((c, i) => [c, i] as const).filter(([c]) => c.lines.some(isReady) && holding(c) > 0);
      const [victim, slot] = eligible[Math.floor(Math.random() * eligible.length)]!;
      const at = Date.now();
      await victim.kill('SIGKILL');
      kills.push({ worker: victim.name, at });
      slots[slot] = spawnWorker(slot + 1);
    }
    await waitUntil(() => sink.applied.size >= JOBS, 40_000, 'every job applied').catch(async (e: unknown) => {
      const missing = Array.from({ length: JOBS }, (_, i) => `job-${i}`).filter((id) => !sink.applied.has(id));
      const sts = await Promise.all(missing.slice(0, 10).map((id) => queue!.status(id)));
      console.log('not applied:', missing.length, JSON.stringify(sts.map((st) => [st.id, st.state, st.owner, st.fencingToken, st.attempt, st.failures, st.notBefore - Date.now(), st.error])));
      const alive = slots.filter((c) => c.alive).map((c) => c.name);
      console.log('alive workers', alive, 'errors', children.flatMap((c) => c.lines.filter((l) => (l as { ev?: string }).ev === 'error')).slice(0, 5));
      throw e;
    });

    // Every job completed, none pending, each completion recorded once.
    for (let i = 0; i < JOBS; i += 100) {
      const sts = await Promise.all(Array.from({ length: Math.min(100, JOBS - i) }, (_, j) => queue!.result(`job-${i + j}`, { waitMs: 20_000 })));
      for (const r of sts) expect(r).toEqual({ applied: true });
    }
    const completions = new Map<string, number>();
    for (const c of children) {
      for (const l of c.lines) {
        const e = l as { ev?: string; jobId?: string };
        if (e.ev === 'completed' && e.jobId) completions.set(e.jobId, (completions.get(e.jobId) ?? 0) + 1);
      }
    }
    // A killed worker may have completed a job without getting to print it; never twice.
    expect([...completions.values()].every((n) => n === 1)).toBe(true);
    expect(completions.size).toBeGreaterThan(JOBS * 0.95);

    // The sink: each effect applied exactly once, stale tokens refused.
    expect(sink.applied.size).toBe(JOBS);
    expect([...sink.applied.values()].every((n) => n === 1)).toBe(true);

    // Resume latency: from each kill to the first takeover of one of the victim's jobs.
    const claims = children.flatMap((c) => c.lines.filter(isClaimed));
    const resumes = kills.map((k) => {
      const taken = claims.filter((c) => c.takenOverFrom === k.worker);
      const first = taken.length === 0 ? null : Math.min(...taken.map((c) => c.at)) - k.at;
      const last = taken.length === 0 ? null : Math.max(...taken.map((c) => c.at)) - k.at;
      return { worker: k.worker, jobsTakenOver: taken.length, firstResumeMs: first, lastResumeMs: last };
    });
    console.log(`chaos: ${JOBS} jobs, sink requests ${sink.total}, repeats after takeover ${sink.repeats}, stale refused ${sink.refusedStale}`);
    console.table(resumes);
    // Each victim held jobs when it was killed, and they were taken over by the others.
    expect(resumes.filter((r) => r.jobsTakenOver > 0).length).toBeGreaterThanOrEqual(marks.length - 1);
  }, 120_000);
});
