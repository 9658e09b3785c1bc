/**
 * One failed background connection attempt counts once in the reconnect backoff, whatever way it
 * failed: a node that refuses the handshake (HANDSHAKE_ERROR), a node of another cluster (the
 * client refuses it after a good handshake), a server that accepts and closes the connection
 * before answering. With `jitter: 0` the delays are exactly minDelay · factorⁿ, and the client's
 * debug log names each scheduled reconnect with its count of failures: they must go 1, 2, 3 with
 * delays 50, 100, 200 ms. A real grid node serves the client meanwhile; the failing endpoint is
 * the second one, so it is only ever tried in the background.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { ScriptedNode } from '@gridlink/testkit';
import { ClusterMismatchError, GridClient, type GridError } from '@gridlink/client';
import { waitFor } from './helpers/wait.js';

interface Scheduled {
  address: string;
  failures: number;
  delayMs: number;
}

let cluster: LocalCluster | undefined;
beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
});
afterAll(async () => {
  await cluster?.stop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * Connects a client to the real node and `bad`, and returns the first three reconnects scheduled
 * for `bad` (as the debug log reports them) and the errors the client emitted meanwhile.
 */
async function reconnectsTo(bad: string): Promise<{ scheduled: Scheduled[]; errors: GridError[] }> {
  const scheduled: Scheduled[] = [];
  const client = await GridClient.connect({
    endpoints: [cluster!.endpoints[0]!, bad],
    connectTimeout: 3000,
    reconnect: { minDelay: 50, maxDelay: 10_000, factor: 2, jitter: 0 },
    logger: {
      debug: (message, fields) => {
        if (message === 'reconnect scheduled' && fields?.address === bad) scheduled.push(fields as unknown as Scheduled);
      },
    },
  });
  cleanups.push(() => client.close());
  const errors: GridError[] = [];
  client.on('error', (e) => errors.push(e));
  await waitFor(() => scheduled.length >= 3, 10_000, `three reconnects of ${bad} scheduled`);
  return { scheduled: scheduled.slice(0, 3), errors };
}

const ONCE_EACH = [
  { failures: 1, delayMs: 50 },
  { failures: 2, delayMs: 100 },
  { failures: 3, delayMs: 200 },
];

describe('a failed background attempt counts once in the reconnect backoff', () => {
  it('a node of another cluster, refused by the client after its handshake', async () => {
    const other = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16, clusterId: 'another-cluster' });
    cleanups.push(() => other.stop());
    const { scheduled, errors } = await reconnectsTo(other.endpoints[0]!);
    expect(scheduled.map(({ failures, delayMs }) => ({ failures, delayMs }))).toEqual(ONCE_EACH);
    expect(errors.length).toBeGreaterThanOrEqual(2);
    for (const e of errors) expect(e).toBeInstanceOf(ClusterMismatchError);
  });

  it('a node refusing the handshake (HANDSHAKE_ERROR)', async () => {
    const refusing = await new ScriptedNode('refusing').start();
    refusing.handshake = 'refuse';
    cleanups.push(() => refusing.close());
    const { scheduled } = await reconnectsTo(refusing.endpoint);
    expect(scheduled.map(({ failures, delayMs }) => ({ failures, delayMs }))).toEqual(ONCE_EACH);
  });

  it('a server that accepts and closes before the handshake is answered', async () => {
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.destroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const { scheduled } = await reconnectsTo(`127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    expect(scheduled.map(({ failures, delayMs }) => ({ failures, delayMs }))).toEqual(ONCE_EACH);
  });
});
