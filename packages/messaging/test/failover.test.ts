import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import type { GridClient } from '@gridlink/client';
import { FaultProxy } from '@gridlink/testkit';
import type { NatsConnection } from '@nats-io/transport-node';
import { JobFailedError, JobQueue, OwnershipLostError, type JobStatus } from '@gridlink/messaging';
import { fileURLToPath } from 'node:url';
import { Child, NatsServer, waitUntil } from './helpers/processes.js';
import { FencedSink } from './helpers/sink.js';
import { connectGrid, connectNats } from './helpers/env.js';

describe('job failover (in-process workers)', () => {
  let cluster: LocalCluster;
  let nats: NatsServer;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    [cluster, nats] = await Promise.all([LocalCluster.start({ nodes: 3, backups: 1, partitions: 64 }), NatsServer.start()]);
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  });
  afterAll(async () => {
    await nats?.stop();
    await cluster?.stop();
  });

  async function grid(endpoints = cluster.endpoints, overrides: Parameters<typeof connectGrid>[1] = {}): Promise<GridClient> {
    const g = await connectGrid(endpoints, { operationTimeout: 8000, ...overrides });
    closers.push(() => g.close());
    return g;
  }
  async function natsConn(): Promise<NatsConnection> {
    const nc = await connectNats(nats.url);
    closers.push(() => nc.close());
    return nc;
  }
  function track<T extends { close(): Promise<void> }>(x: T): T {
    closers.push(() => x.close());
    return x;
  }

  it('a worker partitioned from the grid stops (signal aborts) before another takes its job over; its late completion is refused', async () => {
    const proxies = await Promise.all(cluster.nodeIds.map((id) => FaultProxy.start({ target: cluster.endpointOf(id) })));
    closers.push(async () => {
      for (const p of proxies) await p.close();
    });
    // Connections through the proxies only, kept open while blackholed (a long heartbeat timeout),
    // so the client does not find its way round the partition through the nodes' own addresses.
    const gridA = await grid(
      proxies.map((p) => p.endpoint),
      { heartbeatInterval: 10_000, heartbeatTimeout: 60_000 },
    );
    const qa = track(new JobQueue({ grid: gridA, nats: await natsConn(), queue: 'part' }));
    const qb = track(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: 'part' }));
    let abortedAt = 0;
    let checkpointAfterAbort: unknown = null;
    const wa = track(
      qa.worker(
        async (ctx) => {
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          abortedAt = Date.now();
          checkpointAfterAbort = await ctx.checkpoint({ late: true }).catch((e: unknown) => e);
          return 'A';
        },
        { workerId: 'A' },
      ),
    );
    let bClaimedAt = 0;
    let bToken = 0;
    const wb = track(
      qb.worker(
        async (ctx) => {
          bClaimedAt = Date.now();
          bToken = ctx.fencingToken;
          expect(ctx.takenOverFrom).toBe('A');
          return 'B';
        },
        { workerId: 'B' },
      ),
    );
    const staleA: number[] = [];
    wa.on('stale', (e) => staleA.push(e.fencingToken));
    let aToken = 0;
    wa.on('claimed', (e) => (aToken = e.fencingToken));
    await wa.start();
    await qa.submit('p-1', {});
    await waitUntil(() => aToken > 0, 10_000, 'A to claim the job');
    await wb.start();
    for (const p of proxies) p.blackhole(true);
    expect(await qb.result('p-1', { waitMs: 15_000 })).toBe('B');
    expect(abortedAt).toBeGreaterThan(0);
    expect(abortedAt).toBeLessThan(bClaimedAt);
    expect(bToken).toBeGreaterThan(aToken);
    expect(checkpointAfterAbort).toBeInstanceOf(OwnershipLostError);
    for (const p of proxies) p.heal();
    // A's completion reaches the grid once healed and is refused: B's result stands.
    await waitUntil(() => staleA.length > 0, 15_000, "A's completion to be refused");
    const st = await qb.status('p-1');
    expect(st.result).toBe('B');
    expect(st.fencingToken).toBe(bToken);
  });

  it('workers re-check pending jobs when NATS comes back (jobs submitted while it was down)', async () => {
    const q = track(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: 'natsdown' }));
    const w = track(q.worker(async (ctx) => `done ${ctx.jobId}`, { sweepIntervalMs: 0 }));
    await w.start();
    await nats.kill();
    // A submitter whose NATS connection is gone: the jobs reach the grid, the notifications nobody.
    const dead = await grid();
    const closedNc = await connectNats(nats.url).catch(() => null);
    expect(closedNc).toBeNull();
    const offline = new JobQueue({ grid: dead, nats: { publish: () => { throw new Error('closed'); }, subscribe: () => { throw new Error('closed'); }, status: () => [] } as unknown as NatsConnection, queue: 'natsdown' });
    for (let i = 0; i < 20; i++) await offline.submit(`nd-${i}`, i);
    await nats.restart();
    for (let i = 0; i < 20; i++) expect(await q.result(`nd-${i}`, { waitMs: 15_000 })).toBe(`done nd-${i}`);
  });

  it('a grid node killed while jobs run loses no job', async () => {
    const q = track(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: 'nodekill' }));
    let started = 0;
    const w = track(
      q.worker(
        async (ctx) => {
          started++;
          await ctx.checkpoint({ started: true });
          await new Promise((r) => setTimeout(r, 20));
          return ctx.payload;
        },
        { concurrency: 8 },
      ),
    );
    await w.start();
    for (let i = 0; i < 100; i++) await q.submit(`nk-${i}`, i);
    await waitUntil(() => started >= 20, 10_000, 'jobs to be running');
    await cluster.kill(cluster.nodeIds[0]!);
    for (let i = 0; i < 100; i++) expect(await q.result(`nk-${i}`, { waitMs: 20_000 })).toBe(i);
  });

  it('a worker hung past its lease (SIGSTOP) is taken over; once resumed, its writes are refused and the effect is applied once', async () => {
    const sink = await FencedSink.start();
    closers.push(() => sink.close());
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const file = fileURLToPath(new URL('./fixtures/chaos-worker.ts', import.meta.url));
    const hung = Child.spawn(
      file,
      { GRID_ENDPOINTS: cluster.endpoints.join(','), NATS_URL: nats.url, SINK_URL: sink.url, WORKER_ID: 'hung', QUEUE: 'hang', STEP_MS: '700', CONCURRENCY: '1' },
      'hung',
      root,
    );
    closers.push(() => hung.kill());
    await hung.waitFor((l): l is { ev: 'ready' } => (l as { ev?: string }).ev === 'ready', 30_000);
    const q = track(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: 'hang' }));
    await q.submit('h-1', { n: 1 });
    await hung.waitFor((l): l is { ev: 'claimed' } => (l as { ev?: string }).ev === 'claimed', 10_000);
    process.kill(hung.proc.pid!, 'SIGSTOP');
    const w = track(
      q.worker(async (ctx) => {
        expect(ctx.takenOverFrom).toBe('hung');
        const r = await fetch(`${sink.url}/apply`, { method: 'POST', body: JSON.stringify({ jobId: ctx.jobId, token: ctx.fencingToken }) });
        expect(r.status).toBe(200);
        return { applied: true };
      }, { workerId: 'rescuer' }),
    );
    await w.start();
    expect(await q.result('h-1', { waitMs: 15_000 })).toEqual({ applied: true });
    process.kill(hung.proc.pid!, 'SIGCONT');
    // The resumed worker finds its ownership gone: its next checkpoint or completion is refused.
    await hung.waitFor((l): l is { ev: string } => ['lost', 'stale'].includes((l as { ev?: string }).ev ?? ''), 15_000);
    expect(sink.applied.get('h-1')).toBe(1);
    expect((await q.status('h-1')).owner).toBe('rescuer');
  });
  describe('poison jobs: runs that end without an outcome (worker processes that die)', () => {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const file = fileURLToPath(new URL('./fixtures/poison-worker.ts', import.meta.url));
    type Running = { ev: 'running'; w: string; jobId: string; attempt: number; takenOverFrom: string | null };
    const isRunning = (l: unknown): l is Running => (l as { ev?: string }).ev === 'running';
    const spawnWorker = (id: string, queue: string): Child => {
      const c = Child.spawn(file, { GRID_ENDPOINTS: cluster.endpoints.join(','), NATS_URL: nats.url, WORKER_ID: id, QUEUE: queue, LEASE_MS: '600' }, id, root);
      closers.push(() => c.kill());
      return c;
    };
    /** The `running` line a worker printed for `jobId` (read once its stdout has been read). */
    const ranHere = async (c: Child, jobId: string): Promise<Running> => {
      await waitUntil(() => c.lines.some((l) => isRunning(l) && l.jobId === jobId), 30_000, `${c.name} to run ${jobId}`);
      return c.lines.find((l): l is Running => isRunning(l) && l.jobId === jobId)!;
    };

    it('a job that crashes every worker that runs it is failed and dead-lettered once after maxLostRuns such runs, without running again', async () => {
      const q = track(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: 'poison' }));
      const { status } = await q.submit('poison-1', { crash: true }, { maxLostRuns: 2 });
      expect(status).toMatchObject({ lostRuns: 0, maxLostRuns: 2, maxAttempts: 3 });
      // The first worker runs it and dies of it.
      const c1 = spawnWorker('c1', 'poison');
      expect(await ranHere(c1, 'poison-1')).toMatchObject({ attempt: 1, takenOverFrom: null });
      await c1.exited;
      expect(c1.proc.exitCode).not.toBe(0);
      expect(await q.status('poison-1')).toMatchObject({ state: 'running', owner: 'c1', lostRuns: 0 });
      // The next takes it over (one run lost, under the budget of 2), runs it and dies of it too.
      const c2 = spawnWorker('c2', 'poison');
      expect(await ranHere(c2, 'poison-1')).toMatchObject({ attempt: 2, takenOverFrom: 'c1' });
      await c2.exited;
      expect(c2.proc.exitCode).not.toBe(0);
      expect(await q.status('poison-1')).toMatchObject({
        state: 'running',
        owner: 'c2',
        lostRuns: 1,
        failures: 0,
        error: { name: 'JobRunLostError', message: 'worker lost while running (owner c1)', code: 'JOB_RUN_LOST' },
      });
      // The third worker's takeover is the second lost run: the job is failed instead of run.
      const ran: string[] = [];
      const dead: JobStatus[] = [];
      const failed: { jobId: string; final: boolean; code: string | undefined }[] = [];
      const w3 = track(q.worker(async (ctx) => void ran.push(ctx.jobId), { workerId: 'w3', onDeadLetter: (j) => void dead.push(j) }));
      w3.on('failed', (e) => failed.push({ jobId: e.jobId, final: e.final, code: e.error.code }));
      await w3.start();
      const err = await q.result('poison-1', { waitMs: 15_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(JobFailedError);
      expect((err as JobFailedError).error).toEqual({ name: 'JobRunLostError', message: 'worker lost while running (owner c2)', code: 'JOB_RUN_LOST' });
      await waitUntil(() => dead.length === 1, 5000, 'the dead-letter hook');
      expect(dead[0]).toMatchObject({ id: 'poison-1', state: 'failed', lostRuns: 2, failures: 0, attempt: 2 });
      expect(failed).toEqual([{ jobId: 'poison-1', final: true, code: 'JOB_RUN_LOST' }]);
      expect(ran).toEqual([]);
      // Dead-lettered once: another worker's start and sweeps find nothing to do.
      const w4 = track(q.worker(async (ctx) => void ran.push(ctx.jobId), { workerId: 'w4', onDeadLetter: (j) => void dead.push(j) }));
      await w4.start();
      await w3.sweep();
      await w4.sweep();
      expect(dead).toHaveLength(1);
      expect(ran).toEqual([]);
      expect((await q.status('poison-1')).state).toBe('failed');
    });

    it('by default a worker killed once (a deploy, an unrelated crash) does not fail a job with maxAttempts 1: it is taken over and completes', async () => {
      const q = track(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: 'deploy' }));
      await q.submit('deploy-1', { hang: true }, { maxAttempts: 1 });
      const c = spawnWorker('d1', 'deploy');
      await ranHere(c, 'deploy-1');
      await c.kill('SIGKILL');
      const w = track(q.worker(async (ctx) => `done by ${ctx.takenOverFrom === 'd1' ? 'the rescuer' : '?'}`, { workerId: 'rescuer' }));
      await w.start();
      expect(await q.result('deploy-1', { waitMs: 15_000 })).toBe('done by the rescuer');
      expect(await q.status('deploy-1')).toMatchObject({ state: 'completed', attempt: 2, failures: 0, lostRuns: 1, maxLostRuns: 5, maxAttempts: 1, error: null });
    });
  });
});
