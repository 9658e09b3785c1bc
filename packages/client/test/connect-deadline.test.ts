import { afterEach, describe, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { GridClient, GridConnectionError, type AddressFinder } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const CONNECT_TIMEOUT = 1000;
/** What the finder takes to answer: 60% of the budget. */
const FINDER_MS = 600;
/** connect() must settle within this: the old behaviour took at least FINDER_MS + CONNECT_TIMEOUT (1.6×). */
const BOUND = CONNECT_TIMEOUT * 1.4;

/** A finder (a slow discovery service) answering `endpoints` after FINDER_MS. */
function slowFinder(endpoints: string[]): AddressFinder & { calls: number } {
  const finder = {
    calls: 0,
    resolve: (signal?: AbortSignal): Promise<string[]> => {
      finder.calls++;
      return new Promise<string[]>((resolve, reject) => {
        const t = setTimeout(() => resolve(endpoints), FINDER_MS);
        signal?.addEventListener('abort', () => {
          clearTimeout(t);
          reject(signal.reason as Error);
        });
      });
    },
  };
  return finder;
}

describe('connect() has one deadline of connectTimeout', () => {
  it('a slow finder and then an endpoint that never answers the handshake: rejects within about one connectTimeout', async () => {
    const node = await new ScriptedNode('silent').start();
    node.handshake = 'silent'; // accepts the TCP connection, never answers the handshake
    cleanups.push(() => node.close());
    const t0 = performance.now();
    const err = await GridClient.connect({ addressFinder: slowFinder([node.endpoint]), connectTimeout: CONNECT_TIMEOUT }).catch((e: unknown) => e);
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(GridConnectionError);
    expect((err as GridConnectionError).message).toMatch(new RegExp(`^could not connect to any endpoint within ${CONNECT_TIMEOUT} ms: ${node.endpoint} \\(no answer within`));
    expect(elapsed).toBeGreaterThanOrEqual(FINDER_MS);
    expect(elapsed).toBeLessThan(BOUND);
  });

  it('a slow finder and then a node that hangs after its handshake: resolves within about one connectTimeout, without a map', async () => {
    // Handshakes and heartbeats answered, the map request never.
    const node = await new ScriptedNode('no-map', 8, (req) => (req.op === Op.HEARTBEAT ? { payload: {} } : undefined)).start();
    cleanups.push(() => node.close());
    const t0 = performance.now();
    const client = await GridClient.connect({ addressFinder: slowFinder([node.endpoint]), connectTimeout: CONNECT_TIMEOUT, requestTimeout: 3000 });
    const elapsed = performance.now() - t0;
    cleanups.push(() => client.close());
    expect(elapsed).toBeGreaterThanOrEqual(FINDER_MS);
    expect(elapsed).toBeLessThan(BOUND);
    expect(client.topology().version).toBeNull();
    expect(node.count(Op.TOPOLOGY)).toBeGreaterThanOrEqual(1);
  });

  it('a hung finder beside endpoints leaves them part of the budget: connect goes on with the endpoints and stays within it', async () => {
    const node = await new ScriptedNode('no-map', 8, (req) => (req.op === Op.HEARTBEAT ? { payload: {} } : undefined)).start();
    cleanups.push(() => node.close());
    const hung: AddressFinder = { resolve: () => new Promise<string[]>(() => undefined) };
    const t0 = performance.now();
    const client = await GridClient.connect({ addressFinder: hung, endpoints: [node.endpoint], connectTimeout: CONNECT_TIMEOUT, requestTimeout: 3000 });
    const elapsed = performance.now() - t0;
    cleanups.push(() => client.close());
    expect(client.topology().version).toBeNull();
    expect(elapsed).toBeLessThan(BOUND);
  });
});
