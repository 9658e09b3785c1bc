/**
 * The idempotent consumer's hold on an id while it stores the processed mark: a renewal of the
 * in-progress lock sent just before the handler returned can be answered after the grid applied
 * the mark-and-unlock (a renewal's first attempt lost and retried, or answered before the
 * replicated putAndRelease is): "not held", though nothing was lost. A scripted grid node holds
 * those answers back to give them in that order (a real node cannot be made to on demand); the
 * message is a real one from a real nats-server.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { Socket } from 'node:net';
import { Op, type RequestFrame } from '@gridlink/protocol';
import { GridClient } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { IdempotentConsumer, type IdempotentContext, type Outcome } from '@gridlink/messaging';
import { NatsServer, waitUntil } from './helpers/processes.js';

describe('idempotent consumer: renewal answers after the mark was stored (scripted grid node, real nats-server)', () => {
  let nats: NatsServer | undefined;
  const closers: (() => Promise<void> | void)[] = [];
  beforeAll(async () => {
    nats = await NatsServer.start();
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  /** A grid node that grants the lock and holds back the answers to LOCK_RENEW and LOCK_PUT_RELEASE. */
  async function lockNode(): Promise<{ node: ScriptedNode; held: Map<number, { req: RequestFrame; socket: Socket }> }> {
    const held = new Map<number, { req: RequestFrame; socket: Socket }>();
    const node = new ScriptedNode('own', 8, (req, n, socket) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      if (req.op === Op.LOCK_TRY_ACQUIRE_GET) return { payload: { acquired: true, token: 7, value: null } };
      if (req.op === Op.LOCK_RENEW || req.op === Op.LOCK_PUT_RELEASE) held.set(req.op, { req, socket });
      else if (req.op === Op.LOCK_RELEASE) return { payload: { released: true } };
      return undefined;
    });
    await node.start();
    closers.push(() => node.close());
    return { node, held };
  }

  /** One real core NATS message with a Nats-Msg-Id, as a subscription receives it. */
  async function oneMessage(nc: NatsConnection, id: string): Promise<Msg> {
    let got!: (m: Msg) => void;
    const received = new Promise<Msg>((r) => (got = r));
    const sub = nc.subscribe('own.in', { max: 1, callback: (_e, m) => got(m) });
    await nc.flush();
    const h = headers();
    h.set('Nats-Msg-Id', id);
    nc.publish('own.in', id, { headers: h });
    const m = await received;
    sub.unsubscribe();
    return m;
  }

  /**
   * A consumer on a grid node that holds lock answers back (lockNode), with its own NATS
   * connection. No heartbeats: the only grid operations are the consumer's. Renewals every 2 s
   * (a third of the lease), each given up to 2 s.
   */
  async function consumerOnHeldNode() {
    const { node, held } = await lockNode();
    const g = await GridClient.connect({ endpoints: [node.endpoint], heartbeatInterval: 60_000, heartbeatTimeout: 120_000 });
    closers.push(() => g.close());
    const nc = await connect({ servers: nats!.url });
    closers.push(() => nc.close());
    const ic = new IdempotentConsumer({ grid: g, name: 'own', lockLeaseMs: 6000 });
    closers.push(() => ic.close());
    return { node, held, g, nc, ic };
  }

  it('a renewal answered "not held" while the mark-and-unlock is under way, which then succeeds: processed, and the signal aborts as released, not as lost', async () => {
    const { node, held, g, nc, ic } = await consumerOnHeldNode();
    const processed: string[] = [];
    ic.on('processed', (e) => processed.push(e.id));
    const aborts: string[] = [];
    let ctxSeen: IdempotentContext | undefined;
    const msg = await oneMessage(nc, 'm-1');

    const outcome: Promise<Outcome> = ic.handleCore(msg, async (_m, ctx) => {
      ctxSeen = ctx;
      // What a handler does to learn its hold on the id was lost.
      ctx.signal.addEventListener('abort', () => aborts.push((ctx.signal.reason as Error).message));
      // Returns once a renewal is under way: its answer comes after the mark is stored.
      await waitUntil(() => held.has(Op.LOCK_RENEW), 10_000, 'a renewal sent');
    });
    await waitUntil(() => held.has(Op.LOCK_PUT_RELEASE), 10_000, 'the mark-and-unlock sent');
    // The grid applied the mark-and-unlock; the renewal, reaching it afterwards, finds no lock.
    const pending = g.bookkeeping().operations;
    const renew = held.get(Op.LOCK_RENEW)!;
    node.answer(renew.socket, renew.req, { renewed: false });
    await waitUntil(() => g.bookkeeping().operations === pending - 1, 10_000, 'the renewal answered');
    const put = held.get(Op.LOCK_PUT_RELEASE)!;
    node.answer(put.socket, put.req, { released: true });

    expect(await outcome).toBe('processed');
    expect(processed).toEqual(['m-1']);
    expect(ctxSeen!.signal.aborted).toBe(true);
    expect(aborts).toEqual(['released']);
  });

  it('a mark-and-unlock refused because the lock was lost: failed, and the signal aborts as lost', async () => {
    const { node, held, nc, ic } = await consumerOnHeldNode();
    const failed: string[] = [];
    ic.on('failed', (e) => failed.push(e.id));
    const aborts: string[] = [];
    const msg = await oneMessage(nc, 'm-2');

    const outcome = ic.handleCore(msg, (_m, ctx) => {
      ctx.signal.addEventListener('abort', () => aborts.push((ctx.signal.reason as Error).message));
    });
    await waitUntil(() => held.has(Op.LOCK_PUT_RELEASE), 10_000, 'the mark-and-unlock sent');
    const put = held.get(Op.LOCK_PUT_RELEASE)!;
    node.answer(put.socket, put.req, { released: false });

    expect(await outcome).toBe('failed');
    expect(failed).toEqual(['m-2']);
    expect(aborts).toEqual(['the grid says the lock is no longer held']);
  });
});
