/**
 * A peer that sends requests but does not read the answers: the node stops taking its requests
 * once it owes it more than the high water mark (backpressure over TCP), closes it when it stays
 * idle, and destroys the socket when the last answers are not taken; nobody else notices.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { FrameKind, MAGIC, Op, PROTOCOL_VERSION, encodeFrame } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { outputHighWater } from '../src/server/connection.js';
import { TestConnection } from './helpers/client.js';
import { until } from './helpers/until.js';

const VALUE = 64 * 1024;
const MAX_FRAME = 256 * 1024;
const GETS = 2000; // 128 MiB of answers if all were taken in

describe('a client that does not read its answers', () => {
  let cluster: LocalCluster;
  let good: TestConnection | undefined;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8, maxFrameSize: MAX_FRAME, idleTimeoutMs: 1000, frameTimeoutMs: 300 });
    good = await TestConnection.connect(cluster.endpoints[0]!);
    await good.call(Op.CACHE_PUT, { cache: 'a', key: encodeKey('big'), value: new Uint8Array(VALUE).fill(7), seq: 1 });
  });
  afterAll(async () => {
    good?.close();
    await cluster?.stop();
  });

  it('is held to the high water mark, then closed, and its socket destroyed, while others are served', async () => {
    const node = cluster.node(cluster.nodeIds[0]!);
    // No other connection: every count below is this client's.
    good!.close();
    await until(() => node.bookkeeping().sockets === 0, 'no socket open');
    const [host, port] = cluster.endpoints[0]!.split(':');
    const s = net.connect({ host: host!, port: Number(port) });
    s.on('error', () => {});
    s.pause(); // never reads
    s.write(MAGIC);
    s.write(encodeFrame({ kind: FrameKind.HANDSHAKE, body: { minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, features: 0, sessionId: 'silent' } }));
    const get = (id: number): Uint8Array => encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id, flags: 0, payload: { cache: 'a', key: encodeKey('big') } });
    for (let i = 1; i <= GETS; i++) s.write(get(i));

    let most = 0;
    const sample = (): void => {
      most = Math.max(most, node.bookkeeping().outputBytes);
    };
    // Its connection opens, fills up to the mark (the kernel's socket buffers take some more),
    // and is closed once idle for idleTimeoutMs: reading stopped, so nothing counts as activity.
    await until(() => (sample(), node.bookkeeping().outputBytes > 0), 'answers owed to the silent connection');
    // Another client is served meanwhile.
    const other = await TestConnection.connect(cluster.endpoints[0]!);
    const r = await other.call<{ value: Uint8Array }>(Op.CACHE_GET, { cache: 'a', key: encodeKey('big') });
    expect(r.value.length).toBe(VALUE);
    other.close();
    // Reading stopped, so nothing counts as activity: closed once idle for idleTimeoutMs.
    await until(() => (sample(), node.bookkeeping().clientConnections === 0), 'the silent connection to be closed');
    // Its last answers are not taken: the socket is destroyed after frameTimeoutMs, not kept.
    await until(() => (sample(), node.bookkeeping().sockets === 0), 'the silent socket to be destroyed');
    expect(node.bookkeeping().outputBytes).toBe(0);
    // Owed at the most: the mark plus the answers of one more read's requests at worst, far from
    // the 128 MiB it asked for.
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(outputHighWater(MAX_FRAME) + 4 * MAX_FRAME);
    s.destroy();
    good = await TestConnection.connect(cluster.endpoints[0]!);
  });

  it('a slow reader gets every answer, in order', async () => {
    const [host, port] = cluster.endpoints[0]!.split(':');
    const s = net.connect({ host: host!, port: Number(port) });
    s.on('error', () => {});
    s.pause();
    s.write(MAGIC);
    s.write(encodeFrame({ kind: FrameKind.HANDSHAKE, body: { minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, features: 0, sessionId: 'slow' } }));
    const n = 200; // 12.5 MiB of answers, several times the mark
    for (let i = 1; i <= n; i++) s.write(encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: i, flags: 0, payload: { cache: 'a', key: encodeKey('big') } }));
    // Read, but in bites with pauses, so the node's output backs up and drains many times. The
    // bites are large enough that a loaded machine (timers late by tens of ms) still reads the
    // 12.5 MiB in a few seconds, and only a stall fails: no answer for 10 s, not a slow total.
    const { FrameDecoder } = await import('@gridlink/protocol');
    const decoder = new FrameDecoder({ maxFrameSize: MAX_FRAME, expectMagic: false });
    const ids: number[] = [];
    const node = cluster.node(cluster.nodeIds[0]!);
    let owed = 0; // the most the node held in its own output buffer meanwhile
    await new Promise<void>((resolve, reject) => {
      let stalled: NodeJS.Timeout;
      const watch = (): void => {
        clearTimeout(stalled);
        stalled = setTimeout(() => reject(new Error(`stalled at ${ids.length} of ${n} answers`)), 10_000);
      };
      watch();
      const bite = (): void => {
        owed = Math.max(owed, node.bookkeeping().outputBytes);
        const chunk = (s.read(128 * 1024) ?? s.read()) as Buffer | null;
        if (chunk) {
          const before = ids.length;
          for (const f of decoder.push(chunk)) if (f.kind === FrameKind.RESPONSE) ids.push(f.id);
          if (ids.length > before) watch();
        }
        if (ids.length === n) {
          clearTimeout(stalled);
          resolve();
        } else setTimeout(bite, chunk ? 1 : 5);
      };
      bite();
    });
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(owed).toBeGreaterThan(0); // it did back up
    s.destroy();
  }, 120_000);
});
