/**
 * A job worker's heartbeat against the NATS server's max_payload, and its sweep against close(),
 * with a real grid and real nats-servers (one configured with a max_payload of 200 bytes, so that
 * a hundred running jobs need many messages; the default 1 MiB took ~7,500 of them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { JobQueue, MessagingError, type JobContext } from '@gridlink/messaging';
import { connectNats, messagingEnv } from './helpers/env.js';
import { NatsServer, waitUntil } from './helpers/processes.js';

const MAX_PAYLOAD = 200;
const dec = new TextDecoder();

interface Seen {
  size: number;
  notice: { t?: unknown; w?: unknown; jobs?: unknown };
}

/** Resolves when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

const env = messagingEnv();
const { closers, grid, natsConn, closeAfter, proxiedGrid } = env;

describe('heartbeats under the NATS server max_payload', () => {
  let small: NatsServer;

  beforeAll(async () => {
    small = await NatsServer.start({ maxPayload: MAX_PAYLOAD });
  });
  afterAll(async () => {
    await small?.stop();
  });

  async function smallConn(): Promise<NatsConnection> {
    const nc = await connectNats(small.url);
    closers.push(() => nc.close());
    return nc;
  }

  /** Every `alive` message published on the queue's subject from now on, with its size. */
  async function watchAlive(queue: string): Promise<Seen[]> {
    const seen: Seen[] = [];
    const nc = await smallConn();
    nc.subscribe(`gridlink.jobs.${queue}.alive`, {
      callback: (err, msg) => {
        if (err) return;
        seen.push({ size: msg.data.length, notice: JSON.parse(dec.decode(msg.data)) as Seen['notice'] });
      },
    });
    await nc.flush();
    return seen;
  }

  /** The job entries of the messages of worker `w` in `seen` from index `from` on. */
  function entries(seen: Seen[], w: string, from: number): [string, number][] {
    return seen.slice(from).flatMap((s) => (s.notice.w === w && Array.isArray(s.notice.jobs) ? (s.notice.jobs as [string, number][]) : []));
  }

  it('splits the heartbeat of many jobs into messages under max_payload; another worker waits on them, and takes every job over once they stop', async () => {
    const queue = 'hb-split';
    const n = 100;
    const ids = Array.from({ length: n }, (_, i) => `hb-split-${String(i).padStart(3, '0')}`);
    const seen = await watchAlive(queue);
    const { gate } = env.gate();
    // A handler that stops when its job is lost (its signal aborts), as a handler should.
    const handler = async (ctx: JobContext<unknown>): Promise<string> => {
      await Promise.race([gate, aborted(ctx.signal)]);
      if (ctx.signal.aborted) throw ctx.signal.reason;
      return ctx.jobId;
    };
    // A reaches the grid through fault proxies: cut off later, as a hung or partitioned owner.
    const { gw, proxies } = await proxiedGrid();
    const ncA = await smallConn();
    const qa = closeAfter(new JobQueue({ grid: gw, nats: ncA, queue }));
    const a = qa.worker(handler, { concurrency: n, leaseMs: 3000, closeTimeoutMs: 100, sweepIntervalMs: 0, workerId: 'owner-a' });
    closers.push(() => a.close());
    const aErrors: Error[] = [];
    a.on('error', (e) => aErrors.push(e));
    await a.start();
    const submitter = closeAfter(new JobQueue({ grid: await grid(), nats: await smallConn(), queue }));
    for (const id of ids) await submitter.submit(id, null);
    await waitUntil(() => a.active.length === n, 20_000, 'every job running on A');

    // One round of heartbeats names every job, in messages none of which passes max_payload.
    let from = seen.length;
    await waitUntil(() => new Set(entries(seen, 'owner-a', from).map(([id]) => id)).size === n, 10_000, "A's heartbeats to name every job");
    const round = seen.slice(from).filter((s) => s.notice.w === 'owner-a');
    expect(round.length).toBeGreaterThan(n / 10);
    for (const s of round) {
      expect(s.size).toBeLessThanOrEqual(MAX_PAYLOAD);
      expect(s.notice.t).toBe('alive');
      for (const [id, remaining] of s.notice.jobs as [string, number][]) {
        expect(ids).toContain(id);
        expect(remaining).toBeGreaterThan(0);
      }
    }
    expect(aErrors).toEqual([]);

    // B learns of the jobs (its first sweep tries each lock once), then believes A's heartbeats:
    // it stops trying their locks. Without them it tried each every 100 ms.
    const gb = await grid();
    const qb = closeAfter(new JobQueue({ grid: gb, nats: await smallConn(), queue }));
    const taken: { jobId: string; takenOverFrom: string | null }[] = [];
    const b = qb.worker(handler, { concurrency: n, leaseMs: 3000, closeTimeoutMs: 100, sweepIntervalMs: 0, workerId: 'taker-b' });
    closers.push(() => b.close());
    b.on('claimed', (e) => taken.push({ jobId: e.jobId, takenOverFrom: e.takenOverFrom }));
    b.on('error', () => undefined);
    await b.start();
    from = seen.length;
    await waitUntil(() => entries(seen, 'owner-a', from).length >= 2 * n, 10_000, 'two rounds of heartbeats after B started');
    const before = gb.stats().operations;
    from = seen.length;
    await waitUntil(() => entries(seen, 'owner-a', from).length >= 3 * n, 10_000, 'three more rounds of heartbeats');
    // Three rounds (3 s): no lock tries (without heartbeats, 100 jobs × 10 a second), no reads.
    expect(gb.stats().operations - before).toBeLessThan(10);
    expect(taken).toEqual([]);

    // A goes silent (cut off from the grid and from NATS): B takes every job over once its lease ran out.
    for (const p of proxies) p.blackhole(true);
    await ncA.close();
    await waitUntil(() => taken.length === n, 20_000, 'B to take every job over');
    expect(new Set(taken.map((t) => t.jobId))).toEqual(new Set(ids));
    expect(taken.every((t) => t.takenOverFrom === 'owner-a')).toBe(true);
  }, 90_000);

  it("reports a job whose entry alone cannot fit max_payload as an error event, and still sends the others' heartbeats", async () => {
    const queue = 'hb-too-large';
    const seen = await watchAlive(queue);
    const workerId = 'w'.repeat(64);
    const long = `big-${'x'.repeat(124)}`;
    const short = 'small-1';
    const q = closeAfter(new JobQueue({ grid: await grid(), nats: await smallConn(), queue }));
    const { gate } = env.gate();
    const w = q.worker(
      async (ctx) => {
        await Promise.race([gate, aborted(ctx.signal)]);
        if (ctx.signal.aborted) throw ctx.signal.reason;
        return null;
      },
      { concurrency: 2, leaseMs: 600, closeTimeoutMs: 100, workerId },
    );
    closers.push(() => w.close());
    const errors: MessagingError[] = [];
    w.on('error', (e) => {
      if (e instanceof MessagingError && e.code === 'HEARTBEAT_NOT_SENT') errors.push(e);
    });
    await w.start();
    await q.submit(long, null);
    await q.submit(short, null);
    await waitUntil(() => w.active.length === 2, 10_000, 'both jobs running');
    await waitUntil(() => errors.length > 0, 10_000, 'the heartbeat error');
    expect(errors[0]!.message).toContain(long);
    expect(errors[0]!.message).toContain(`max_payload (${MAX_PAYLOAD} bytes)`);
    const from = seen.length;
    await waitUntil(() => entries(seen, workerId, from).some(([id]) => id === short), 10_000, "the short job's heartbeat");
    expect(entries(seen, workerId, from).some(([id]) => id === long)).toBe(false);
  });
});

describe('close() and the sweep', () => {
  it('a sweep under way reads nothing more once close() resolved, and nothing is published after it', async () => {
    const queue = 'close-sweep';
    const submitter = closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue }));
    // Unfinished jobs for the sweep to read (index entries and records), not due for a minute.
    for (let i = 0; i < 20; i++) await submitter.submit(`later-${i}`, null, { delayMs: 60_000 });
    const { gw, proxies } = await proxiedGrid();
    const nc = await natsConn();
    const q = closeAfter(new JobQueue({ grid: gw, nats: nc, queue }));
    const w = q.worker(async () => null, { sweepIntervalMs: 0 });
    w.on('error', () => undefined);
    await w.start();
    const published: string[] = [];
    const observer = await natsConn();
    observer.subscribe(`gridlink.jobs.${queue}.>`, {
      callback: (err, msg) => {
        if (!err) published.push(msg.subject);
      },
    });
    await observer.flush();

    // Each request to the grid now takes 100 ms each way: a sweep takes a while.
    for (const p of proxies) p.delay(100);
    let settled = false;
    const sweeping = w.sweep().finally(() => (settled = true));
    await waitUntil(() => gw.stats().nodes.some((s) => s.inFlight > 0), 5000, "the sweep's first read");
    await w.close();
    const opsAtClose = gw.stats().operations;
    const publishedAtClose = published.length;
    // Without the fix the sweep went on after close() resolved: its next reads went out.
    expect(settled).toBe(true);
    await waitUntil(() => settled || gw.stats().operations > opsAtClose, 5000, 'the sweep to end or read again');
    await sweeping;
    for (const p of proxies) p.delay(0);
    await nc.flush();
    await observer.flush();
    expect(gw.stats().operations).toBe(opsAtClose);
    expect(published.slice(publishedAtClose)).toEqual([]);
  });
});
