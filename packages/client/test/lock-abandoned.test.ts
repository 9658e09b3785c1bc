/**
 * An acquisition its caller gave up on without an answer — its signal aborted, its `timeoutMs`
 * passed while the node was still waiting for the lock (`waitMs` longer) — must not leave the
 * lock taken by nobody. The node goes on with the request it got: a waiting `acquire` is granted
 * when the holder releases, and a `tryAcquire` whose answer never arrived holds the lock too;
 * without a follow-up, every other client then waited out the whole lease of a handle nobody has.
 * Against a real one-node LocalCluster; the holders are other clients, so nothing the giving-up
 * client sends by chance tells the node the acquisition was settled.
 */
import { describe, expect, it } from 'vitest';
import { GridAbortError, GridClient, GridConnectionError, GridTimeoutError, type LockHandle } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { oneNodeGrid, perTest } from './helpers/grid.js';
import { rejection, show, waitFor } from './helpers/wait.js';

const grid = oneNodeGrid();
const { cleanups, connect } = perTest(grid);

/** Requests of `client` the node has not answered yet. */
function inFlight(client: GridClient): number {
  return client.stats().nodes.reduce((n, node) => n + node.inFlight, 0);
}

/** `client` takes `key` within `ms` (polling tryAcquire), and releases it. */
async function expectTakenSoon(client: GridClient, key: string, ms: number): Promise<void> {
  let h: LockHandle | null = null;
  await waitFor(async () => (h = await client.lock(key).tryAcquire({ leaseMs: 5000 })) !== null, ms, `another client takes ${key}`);
  await (h as unknown as LockHandle).release();
}

describe('an acquisition given up before its answer', () => {
  it('acquire aborted by its signal while the node waits: the holder\'s release frees the lock for others, not for nobody', async () => {
    const [holderClient, quitter, other] = [await connect(), await connect(), await connect()];
    const holder = await holderClient.lock('abandon-abort').acquire({ leaseMs: 30_000 });
    const ac = new AbortController();
    const waiting = quitter.lock('abandon-abort').acquire({ waitMs: 20_000, leaseMs: 30_000, signal: ac.signal });
    await waitFor(() => inFlight(quitter) === 1, 2000, 'the acquisition sent');
    ac.abort(new Error('the caller went away'));
    const e = await rejection(waiting);
    expect(e, show(e)).toBeInstanceOf(GridAbortError);
    await holder.release();
    // Before the fix the node granted the waiting acquisition here, for its 30 s lease.
    await expectTakenSoon(other, 'abandon-abort', 3000);
  });

  it('acquire whose timeoutMs ends the wait early: GridTimeoutError, and the lock is not granted to nobody afterwards', async () => {
    const [holderClient, quitter, other] = [await connect(), await connect(), await connect()];
    const holder = await holderClient.lock('abandon-timeout').acquire({ leaseMs: 30_000 });
    const e = await rejection(quitter.lock('abandon-timeout').acquire({ waitMs: 20_000, leaseMs: 30_000, timeoutMs: 200 }));
    expect(e, show(e)).toBeInstanceOf(GridTimeoutError);
    await holder.release();
    await expectTakenSoon(other, 'abandon-timeout', 3000);
  });

  it('tryAcquire aborted while the node hangs: the grant it makes on resuming is released', async () => {
    const [quitter, other] = [await connect(), await connect()];
    const ac = new AbortController();
    grid.cluster.hang('node-1');
    cleanups.push(async () => grid.cluster.resume('node-1'));
    const trying = quitter.lock('abandon-hung').tryAcquire({ leaseMs: 30_000, signal: ac.signal });
    await waitFor(() => inFlight(quitter) === 1, 2000, 'the attempt sent');
    ac.abort();
    expect(await rejection(trying)).toBeInstanceOf(GridAbortError);
    grid.cluster.resume('node-1');
    await expectTakenSoon(other, 'abandon-hung', 3000);
  });

  it('acquire aborted while an older operation of the same client is still open: the holder\'s release frees the lock for others', async () => {
    // The token-0 release's `ack` cannot pass the abandoned seq while an older one is open (a busy
    // client: here another acquisition, waiting for a lock held 30 s more): the node must end the
    // abandoned wait on the release naming its owner, not on the ack alone.
    const [holderClient, quitter, other] = [await connect(), await connect(), await connect()];
    const olderHold = await holderClient.lock('abandon-older-open-1').acquire({ leaseMs: 30_000 });
    const holder = await holderClient.lock('abandon-older-open-2').acquire({ leaseMs: 30_000 });
    const older = quitter.lock('abandon-older-open-1').acquire({ waitMs: 20_000, leaseMs: 30_000 });
    cleanups.push(async () => {
      await olderHold.release();
      await (await older).release();
    });
    await waitFor(() => inFlight(quitter) === 1, 2000, 'the older acquisition sent');
    const ac = new AbortController();
    const waiting = quitter.lock('abandon-older-open-2').acquire({ waitMs: 20_000, leaseMs: 30_000, signal: ac.signal });
    await waitFor(() => inFlight(quitter) === 2, 2000, 'the acquisition sent');
    ac.abort();
    expect(await rejection(waiting)).toBeInstanceOf(GridAbortError);
    // The immediate follow-up is over (only the older acquisition is left under way).
    await waitFor(() => quitter.bookkeeping().operations === 1, 3000, 'the follow-up answered');
    await holder.release();
    // Before the fix the node granted the abandoned acquisition here, held by nobody until the
    // older acquisition had settled (20 s here).
    await expectTakenSoon(other, 'abandon-older-open-2', 3000);
  });

  it('an acquisition abandoned while close() waits for it: close() waits for its follow-up, and the grant is released', async () => {
    const [quitter, other] = [await connect(), await connect()];
    const ac = new AbortController();
    grid.cluster.hang('node-1');
    cleanups.push(async () => grid.cluster.resume('node-1'));
    const started = quitter.stats().operations;
    const trying = quitter.lock('abandon-close').tryAcquire({ leaseMs: 30_000, signal: ac.signal });
    await waitFor(() => inFlight(quitter) === 1, 2000, 'the attempt sent');
    let closed = false;
    const closing = quitter.close().then(() => (closed = true));
    ac.abort();
    expect(await rejection(trying)).toBeInstanceOf(GridAbortError);
    // The follow-up's token-0 release is waiting on the hung node (or, before the fix, close()
    // had closed the connections under it).
    await waitFor(() => closed || (quitter.stats().operations - started >= 2 && inFlight(quitter) === 1), 2000, 'the follow-up sent, or close() done');
    grid.cluster.resume('node-1');
    await closing;
    expect(quitter.bookkeeping().operations).toBe(0);
    // Before the fix the node granted the abandoned attempt on resuming, for its 30 s lease.
    await expectTakenSoon(other, 'abandon-close', 3000);
  });

  it('acquisitions that never reached a node (the grid unreachable) start no follow-up, and close() has none to wait for', async () => {
    // Before, every such failure started a follow-up (a token-0 release, a try-acquire), each
    // step waiting for a connection up to the release timeout: background work per failed
    // acquisition while the grid was down, and close() waiting for all of it.
    const own = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
    cleanups.push(() => own.stop());
    const quitter = await GridClient.connect({ endpoints: own.endpoints, connectTimeout: 3000, operationTimeout: 300 });
    quitter.on('error', () => undefined);
    cleanups.push(() => quitter.close());
    await own.kill('node-1');
    await waitFor(() => quitter.stats().nodes.every((n) => !n.connected), 5000, 'the client without a connection');
    const before = quitter.stats().operations;
    const calls: [string, () => Promise<unknown>][] = [
      ['tryAcquire', () => quitter.lock('abandon-unreachable').tryAcquire({ leaseMs: 5000 })],
      ['attemptGet', () => quitter.lock('abandon-unreachable').attemptGet(quitter.cache('abandon-unreachable'))],
      ['acquire', () => quitter.lock('abandon-unreachable').acquire({ waitMs: 100 })],
    ];
    for (const [name, call] of calls) {
      const e = await rejection(call());
      expect(e instanceof GridTimeoutError || e instanceof GridConnectionError, `${name}: ${show(e)}`).toBe(true);
    }
    // Only the three acquisitions: no release or try-acquire was started after them.
    expect(quitter.stats().operations - before).toBe(3);
    expect(quitter.bookkeeping().operations).toBe(0);
  });

  it('an acquisition aborted before it was sent sends nothing more', async () => {
    const quitter = await connect();
    const before = quitter.stats().operations;
    const ac = new AbortController();
    ac.abort();
    expect(await rejection(quitter.lock('abandon-early').acquire({ signal: ac.signal }))).toBeInstanceOf(GridAbortError);
    expect(await rejection(quitter.lock('abandon-early').attempt({ signal: ac.signal }))).toBeInstanceOf(GridAbortError);
    expect(quitter.stats().operations - before).toBe(2);
    expect(quitter.bookkeeping().operations).toBe(0);
  });
});
