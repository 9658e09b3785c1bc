/**
 * Job workers against forged notices and against a grid that does not take a run's outcome, with
 * a real grid and nats-server.
 */
import { describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { JobOutcomeNotRecordedError, JobQueue, type JobWorker, type WorkerEvents } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

type Unrecorded = Parameters<WorkerEvents['unrecorded']>[0];

describe('job notices are hints; outcomes the grid did not take are announced and retried', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn, closeAfter, proxiedGrid } = env;
  const enc = new TextEncoder();
  /** Resolves once every message published before on any of `conns` has reached its subscribers. */
  async function delivered(...conns: NatsConnection[]): Promise<void> {
    for (const c of conns) await c.flush();
  }

  it('forged done, alive and released notices make no job forgotten, postponed or run twice', async () => {
    const queue = 'forged';
    const nc1 = await natsConn();
    const nc2 = await natsConn();
    const q1 = closeAfter(new JobQueue({ grid: await grid(), nats: nc1, queue }));
    const q2 = closeAfter(new JobQueue({ grid: await grid(), nats: nc2, queue }));
    const { gate, open } = env.gate();
    const runs = new Map<string, number>();
    const handler = async (ctx: { jobId: string }): Promise<string> => {
      runs.set(ctx.jobId, (runs.get(ctx.jobId) ?? 0) + 1);
      if (ctx.jobId.startsWith('busy')) await gate;
      return ctx.jobId;
    };
    // No backstop sweep: what a worker does not remember is not found again in this test.
    const w1 = closeAfter(q1.worker(handler, { concurrency: 1, sweepIntervalMs: 0, workerId: 'w1' }));
    const w2 = closeAfter(q2.worker(handler, { concurrency: 1, sweepIntervalMs: 0, workerId: 'w2' }));
    const claimed = new Set<string>();
    for (const w of [w1, w2]) w.on('claimed', (e) => claimed.add(e.jobId));
    await w1.start();
    await w2.start();
    // Both workers busy (one job each), so the next jobs wait as their candidates.
    await q1.submit('busy-1', null);
    await q1.submit('busy-2', null);
    await waitUntil(() => claimed.size === 2, 10_000, 'both busy jobs claimed');
    const jobs = ['j-done', 'j-alive', 'j-released', 'j-all'];
    for (const id of jobs) await q1.submit(id, null);
    // Each worker has heard of the jobs (and of the other's busy job) before the forgeries.
    await delivered(nc1, nc2);

    const attacker = await natsConn();
    const forge = (kind: string, body: unknown): void => attacker.publish(`gridlink.jobs.${queue}.${kind}`, enc.encode(JSON.stringify(body)));
    const later = Date.now() + 3_600_000;
    forge('done', { t: 'done', id: 'j-done', state: 'completed' });
    forge('alive', { t: 'alive', w: 'ghost', jobs: [['j-alive', 3_600_000]] });
    forge('released', { t: 'released', id: 'j-released', notBefore: later });
    forge('alive', { t: 'alive', w: 'w1', jobs: [['j-all', 3_600_000]] });
    forge('done', { t: 'done', id: 'j-all', state: 'failed' });
    forge('submitted', { t: 'submitted', id: 'j-all', notBefore: later });
    // The running jobs: "done" while they run, "released" to make the other worker try them.
    for (const id of ['busy-1', 'busy-2']) {
      forge('done', { t: 'done', id, state: 'completed' });
      forge('released', { t: 'released', id, notBefore: 0 });
    }
    await attacker.flush();
    await delivered(nc1, nc2);
    open();
    for (const id of [...jobs, 'busy-1', 'busy-2']) expect(await q1.result(id, { waitMs: 15_000 }), id).toBe(id);
    for (const id of [...jobs, 'busy-1', 'busy-2']) expect(runs.get(id), id).toBe(1);
  });

  it('genuine notices cost a worker that is not the owner two record reads per job: the claim and done, not the later heartbeats', async () => {
    const queue = 'notice-cost';
    const wg = await grid();
    const wnc = await natsConn();
    const qw = closeAfter(new JobQueue({ grid: wg, nats: wnc, queue }));
    const qo = closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue }));
    const gates = new Map<string, () => void>();
    closers.push(() => {
      for (const open of gates.values()) open();
    });
    const handler = async (ctx: { jobId: string }): Promise<string> => {
      await new Promise<void>((r) => gates.set(ctx.jobId, r));
      return ctx.jobId;
    };
    // The observer: busy with one job (a long lease: no renewal during the test), no sweeps.
    const w = closeAfter(qw.worker(handler, { concurrency: 1, leaseMs: 60_000, sweepIntervalMs: 0, workerId: 'observer' }));
    await w.start();
    await qw.submit('busy', null);
    await waitUntil(() => gates.has('busy'), 10_000, 'the observer to run its job');
    const o = closeAfter(qo.worker(handler, { concurrency: 1, workerId: 'owner' }));
    await o.start();
    // Heartbeats of the owner naming the job, as the observer's connection receives them.
    let beats = 0;
    const probe = wnc.subscribe(`gridlink.jobs.${queue}.alive`, {
      callback: (_e, m) => {
        const n = JSON.parse(new TextDecoder().decode(m.data)) as { w: string; jobs: [string, number][] };
        if (n.w === 'owner' && n.jobs.some(([id]) => id === 'j-1')) beats++;
      },
    });
    closers.push(() => probe.unsubscribe());
    const ops = wg.stats().operations;
    await qo.submit('j-1', null);
    await waitUntil(() => gates.has('j-1'), 10_000, 'the owner to run the job');
    // The claim's heartbeat and three periodic ones.
    await waitUntil(() => beats >= 4, 10_000, 'heartbeats of the owner');
    await delivered(wnc);
    gates.get('j-1')?.();
    expect(await qo.result('j-1', { waitMs: 10_000 })).toBe('j-1');
    await waitUntil(() => wg.stats().operations - ops >= 2, 10_000, "the observer's checks");
    // Settled: the observer forgot the job (a later done would cost it nothing).
    await delivered(wnc);
    expect(wg.stats().operations - ops).toBe(2);
    gates.get('busy')?.();
  });

  it('heartbeats replayed in the name of a confirmed owner that died hold its job until a sweep: then it is taken over', async () => {
    const queue = 'replayed';
    const leaseMs = 600;
    const { gw, proxies } = await proxiedGrid();
    const qa = closeAfter(new JobQueue({ grid: gw, nats: await natsConn(), queue }));
    const bnc = await natsConn();
    const qb = closeAfter(new JobQueue({ grid: await grid(), nats: bnc, queue }));
    const { gate } = env.gate();
    const a = closeAfter(qa.worker(async () => gate, { workerId: 'A', leaseMs, sweepIntervalMs: 0, closeTimeoutMs: 100 }));
    const lost: string[] = [];
    a.on('lost', (e) => lost.push(e.jobId));
    await a.start();
    // A genuine heartbeat of A naming the job, kept for the replay.
    let recorded: Uint8Array | null = null;
    const probe = bnc.subscribe(`gridlink.jobs.${queue}.alive`, {
      callback: (_e, m) => {
        const n = JSON.parse(new TextDecoder().decode(m.data)) as { w: string };
        if (n.w === 'A') recorded = m.data;
      },
    });
    closers.push(() => probe.unsubscribe());
    await qa.submit('r-1', null);
    await waitUntil(() => recorded !== null, 10_000, 'a heartbeat of A');
    // B learns of the job (its start's sweep; its lock try refused) and confirms A as its owner
    // from A's next heartbeat (a read of the record).
    const b = closeAfter(qb.worker(async () => 'B ran it', { workerId: 'B', leaseMs, sweepIntervalMs: 0 }));
    const claimedByB: (string | null)[] = [];
    b.on('claimed', (e) => claimedByB.push(e.takenOverFrom));
    await b.start();
    let beats = 0;
    const counter = bnc.subscribe(`gridlink.jobs.${queue}.alive`, { callback: () => void beats++ });
    closers.push(() => counter.unsubscribe());
    await waitUntil(() => beats >= 3, 10_000, 'heartbeats of A after B started');
    // A dies for the grid: its lease is no longer renewed, it stops its heartbeats.
    for (const p of proxies) p.blackhole(true);
    await waitUntil(() => lost.length === 1, 10_000, 'A to give the job up');
    // Someone replays A's heartbeat every 100 ms: B keeps holding the job past the lease's end.
    const attacker = await natsConn();
    const replay = setInterval(() => attacker.publish(`gridlink.jobs.${queue}.alive`, recorded as unknown as Uint8Array), 100);
    closers.push(() => clearInterval(replay));
    const since = Date.now();
    await waitUntil(() => Date.now() - since > 5 * leaseMs, 10_000, 'five leases');
    expect(claimedByB).toEqual([]);
    // The sweep tries the lock of every job running elsewhere, whatever heartbeats say.
    await b.sweep();
    await waitUntil(() => claimedByB.length === 1, 10_000, 'B to take the job over');
    expect(claimedByB).toEqual(['A']);
    expect(await qb.result('r-1', { waitMs: 10_000 })).toBe('B ran it');
    clearInterval(replay);
  });

  it.each(['completed', 'failed'] as const)('a %s outcome the grid does not take is announced and retried until it applies: recorded once, the handler ran once', async (outcome) => {
    const queue = `unrec-${outcome}`;
    const { gw, proxies } = await proxiedGrid();
    const qw = closeAfter(new JobQueue({ grid: gw, nats: await natsConn(), queue }));
    const reader = closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue }));
    const { gate, open } = env.gate();
    let runs = 0;
    const w: JobWorker = closeAfter(
      qw.worker(
        async () => {
          runs++;
          await gate;
          if (outcome === 'failed') throw new Error('handler failed');
          return 'ran';
        },
        { workerId: 'w', sweepIntervalMs: 0 },
      ),
    );
    let token = 0;
    w.on('claimed', (e) => (token = e.fencingToken));
    const unrecorded: Unrecorded[] = [];
    const errors: Error[] = [];
    w.on('unrecorded', (e) => unrecorded.push(e));
    w.on('error', (e) => errors.push(e));
    const recorded = new Promise<void>((r) => {
      w.on('completed', () => r());
      w.on('failed', () => r());
    });
    await w.start();
    await qw.submit('u-1', null, { maxAttempts: 1 });
    await waitUntil(() => token > 0, 10_000, 'the job claimed');
    for (const p of proxies) p.blackhole(true);
    open();
    await waitUntil(() => unrecorded.length > 0, 15_000, 'the unrecorded outcome announced');
    const first = unrecorded[0] as Unrecorded;
    expect(first).toMatchObject({ jobId: 'u-1', fencingToken: token, outcome, attempt: 1, willRetry: true });
    expect(first.error).toBeInstanceOf(JobOutcomeNotRecordedError);
    expect(first.error.code).toBe('JOB_OUTCOME_NOT_RECORDED');
    expect(first.error.cause).toBeInstanceOf(Error);
    expect(errors).toContain(first.error);
    // Not recorded: the grid still says running, with this run's token.
    const during = await reader.status('u-1');
    expect(during).toMatchObject({ state: 'running', fencingToken: token });
    for (const p of proxies) p.heal();
    await recorded;
    const st = await reader.status('u-1');
    expect(st).toMatchObject({ state: outcome, fencingToken: token, attempt: 1 });
    if (outcome === 'completed') expect(st.result).toBe('ran');
    else expect(st.error?.message).toBe('handler failed');
    expect(runs).toBe(1);
  });

  it('notices whose check the grid does not answer are dropped: their jobs stay claimable', async () => {
    const queue = 'check-fails';
    const { gw, proxies } = await proxiedGrid();
    const nc = await natsConn();
    const q = closeAfter(new JobQueue({ grid: gw, nats: nc, queue }));
    const reader = closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue }));
    const { gate, open } = env.gate();
    const runs = new Map<string, number>();
    const w = closeAfter(
      q.worker(
        async (ctx) => {
          runs.set(ctx.jobId, (runs.get(ctx.jobId) ?? 0) + 1);
          if (ctx.jobId === 'busy') await gate;
          return ctx.jobId;
        },
        { concurrency: 1, sweepIntervalMs: 0 },
      ),
    );
    const errors: Error[] = [];
    w.on('error', (e) => errors.push(e));
    let claimed = false;
    w.once('claimed', () => (claimed = true));
    await w.start();
    await q.submit('busy', null);
    await waitUntil(() => claimed, 10_000, 'the busy job claimed');
    await q.submit('p-1', null);
    await q.submit('p-2', null);
    await delivered(nc);
    for (const p of proxies) p.blackhole(true);
    // The first notice's check is sent (and hangs); the second is queued behind it.
    const attacker = await natsConn();
    for (const id of ['p-1', 'p-2']) attacker.publish(`gridlink.jobs.${queue}.done`, enc.encode(JSON.stringify({ t: 'done', id, state: 'completed' })));
    await attacker.flush();
    await delivered(nc);
    await waitUntil(() => errors.length > 0, 15_000, 'the check to fail');
    for (const p of proxies) p.heal();
    open();
    for (const id of ['busy', 'p-1', 'p-2']) expect(await reader.result(id, { waitMs: 15_000 }), id).toBe(id);
    expect([...runs.values()]).toEqual([1, 1, 1]);
  });

  it('close() gives up on an outcome the grid does not take: announced as given up, the job runs again after takeover', async () => {
    const queue = 'unrec-close';
    const { gw, proxies } = await proxiedGrid();
    const qa = closeAfter(new JobQueue({ grid: gw, nats: await natsConn(), queue }));
    const qb = closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue }));
    const { gate, open } = env.gate();
    const runs: string[] = [];
    const wa = closeAfter(
      qa.worker(
        async () => {
          runs.push('A');
          await gate;
          return 'A';
        },
        { workerId: 'A', sweepIntervalMs: 0, closeTimeoutMs: 200 },
      ),
    );
    let aToken = 0;
    wa.on('claimed', (e) => (aToken = e.fencingToken));
    const unrecorded: Unrecorded[] = [];
    wa.on('unrecorded', (e) => unrecorded.push(e));
    await wa.start();
    await qa.submit('c-1', null);
    await waitUntil(() => aToken > 0, 10_000, 'A to claim the job');
    for (const p of proxies) p.blackhole(true);
    open();
    await waitUntil(() => unrecorded.length > 0, 15_000, 'the unrecorded completion announced');
    expect(unrecorded[0]).toMatchObject({ jobId: 'c-1', fencingToken: aToken, willRetry: true });
    await wa.close(); // gives up after closeTimeoutMs: no hang while the grid stays away
    expect(unrecorded.at(-1)).toMatchObject({ jobId: 'c-1', fencingToken: aToken, willRetry: false });
    expect(unrecorded.at(-1)?.error.willRetry).toBe(false);
    // The record still says running with A's token: B takes the job over and runs it again.
    const wb = closeAfter(
      qb.worker(
        async (ctx) => {
          runs.push('B');
          expect(ctx.takenOverFrom).toBe('A');
          return 'B';
        },
        { workerId: 'B' },
      ),
    );
    await wb.start();
    expect(await qb.result('c-1', { waitMs: 15_000 })).toBe('B');
    expect(runs).toEqual(['A', 'B']);
    const st = await qb.status('c-1');
    expect(st.fencingToken).toBeGreaterThan(aToken);
  });

  it('a handler that stops on the OwnershipLostError of its checkpoint, before the watchdog fired, releases the job: no failure is counted', async () => {
    const q = closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: 'lost-checkpoint' }));
    const attempts: number[] = [];
    const w = closeAfter(
      q.worker(
        async (ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt === 1) {
            // A stall (a long GC pause, say) past the lease margin: no timer runs meanwhile, so
            // the lease is no longer certain but the watchdog has not aborted the signal yet.
            const until = Date.now() + 400;
            while (Date.now() < until) {
              // stalled
            }
            await ctx.checkpoint({ step: 1 }); // throws OwnershipLostError
          }
          return 'ok';
        },
        { leaseMs: 300, leaseMarginMs: 60 },
      ),
    );
    const lost: string[] = [];
    w.on('lost', (e) => lost.push(e.reason));
    await w.start();
    await q.submit('l-1', null, { maxAttempts: 1 });
    expect(await q.result('l-1', { waitMs: 10_000 })).toBe('ok');
    expect(attempts).toEqual([1, 2]);
    const st = await q.status('l-1');
    expect(st.failures).toBe(0);
    expect(lost.length).toBeGreaterThan(0);
  });
});
