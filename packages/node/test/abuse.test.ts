import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { FrameKind, MAGIC, Op, PROTOCOL_VERSION, encodeFrame } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestConnection } from './helpers/client.js';

function rawConnect(endpoint: string): Promise<net.Socket> {
  const [host, port] = endpoint.split(':');
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: host!, port: Number(port) }, () => resolve(s));
    s.on('error', reject);
  });
}

function closed(s: net.Socket, timeoutMs = 5000): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (s.destroyed || s.readableEnded) return resolve(0);
    const timer = setTimeout(() => reject(new Error('socket not closed by the node')), timeoutMs);
    s.on('data', () => {});
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

const handshake = (): Uint8Array =>
  encodeFrame({ kind: FrameKind.HANDSHAKE, body: { minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, features: 0, sessionId: 's' } });

describe('bad input closes only the offending connection', () => {
  let cluster: LocalCluster;
  let good: TestConnection;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8, maxFrameSize: 64 * 1024, frameTimeoutMs: 400, handshakeTimeoutMs: 400 });
    good = await TestConnection.connect(cluster.endpoints[0]!);
  });
  afterAll(async () => {
    good.close();
    await cluster.stop();
  });

  async function stillServing(): Promise<void> {
    await good.call(Op.CACHE_PUT, { cache: 'a', key: encodeKey('k'), value: new Uint8Array([1]), seq: Date.now() });
    const r = await good.call<{ value: Uint8Array }>(Op.CACHE_GET, { cache: 'a', key: encodeKey('k') });
    expect([...r.value]).toEqual([1]);
  }

  it('wrong magic', async () => {
    const s = await rawConnect(cluster.endpoints[0]!);
    s.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await closed(s);
    await stillServing();
  });

  it('malformed frame after a good handshake', async () => {
    const s = await rawConnect(cluster.endpoints[0]!);
    s.write(MAGIC);
    s.write(handshake());
    // length 6, kind 99 (unknown), junk
    s.write(Buffer.from([0, 0, 0, 6, 99, 1, 2, 3, 4, 5]));
    await closed(s);
    await stillServing();
  });

  it('oversized frame (length prefix beyond maxFrameSize) whose header never comes: cut off by the frame timeout', async () => {
    const s = await rawConnect(cluster.endpoints[0]!);
    s.write(MAGIC);
    s.write(handshake());
    s.write(Buffer.from([0x7f, 0xff, 0xff, 0xff]));
    await closed(s);
    await stillServing();
  });

  it('oversized frame that is not a request: closed as soon as its kind byte arrives', async () => {
    const s = await rawConnect(cluster.endpoints[0]!);
    s.write(MAGIC);
    s.write(handshake());
    s.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, FrameKind.PUSH]));
    await closed(s);
    await stillServing();
  });

  it('slow sender, byte by byte', async () => {
    const s = await rawConnect(cluster.endpoints[0]!);
    s.write(MAGIC);
    s.write(handshake());
    const frame = encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 0, payload: {} });
    let i = 0;
    let stop = false;
    const drip = setInterval(() => {
      if (stop || s.destroyed || i >= frame.length) return clearInterval(drip);
      s.write(frame.subarray(i, i + 1));
      i++;
    }, 150);
    const ms = await closed(s);
    stop = true;
    clearInterval(drip);
    expect(i).toBeLessThan(frame.length);
    expect(ms).toBeGreaterThan(0);
    await stillServing();
  });

  it('no handshake at all', async () => {
    const s = await rawConnect(cluster.endpoints[0]!);
    await closed(s);
    await stillServing();
  });

  it('refuses a client that expects another cluster', async () => {
    const s = await rawConnect(cluster.endpoints[0]!);
    s.write(MAGIC);
    s.write(encodeFrame({ kind: FrameKind.HANDSHAKE, body: { minVersion: 1, maxVersion: 1, features: 0, sessionId: 's', clusterId: 'other' } }));
    await closed(s);
    await stillServing();
  });

  it('peer ops from a client connection are refused, not executed', async () => {
    const f = await good.request(Op.PEER_CLEAR, { cache: 'a', seq: 1, session: 'x' });
    expect(f.flags & 1).toBe(1);
    await stillServing();
  });
});
