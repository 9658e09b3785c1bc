/**
 * A node's frame limit (ADR 0009), against a real node on 127.0.0.1 with a small maxFrameSize:
 * it is announced in HANDSHAKE_OK; a request over it (sent by a client that did not look, here a
 * raw socket) is answered FRAME_TOO_LARGE for its id and skipped, and the connection keeps
 * serving; other oversized frames still close the connection; a response over the limit a
 * client announced is answered FRAME_TOO_LARGE instead of being sent.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import {
  ErrorCode,
  FrameDecoder,
  FrameKind,
  MAGIC,
  Op,
  PROTOCOL_VERSION,
  ResponseFlag,
  WireClient,
  WireResponseError,
  encodeFrame,
  type ErrorPayload,
  type Frame,
  type ResponseFrame,
} from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { until } from './helpers/until.js';

const LIMIT = 4096;

/** A raw client socket that decodes what the node sends. */
class Raw {
  readonly frames: Frame[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.frames.push(...this.decoder.push(chunk)));
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  static connect(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }

  /** MAGIC + handshake (without maxFrameSize, as a client before ADR 0009), and its answer. */
  async handshake(): Promise<Frame> {
    this.socket.write(MAGIC);
    this.socket.write(
      encodeFrame({ kind: FrameKind.HANDSHAKE, body: { minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, features: 0, sessionId: 'raw' } }),
    );
    await until(() => this.frames.length > 0 || this.closed, 'the handshake answer');
    return this.frames.shift()!;
  }

  async response(id: number): Promise<ResponseFrame> {
    let found: ResponseFrame | undefined;
    await until(() => {
      found = this.frames.find((f): f is ResponseFrame => f.kind === FrameKind.RESPONSE && f.id === id);
      return found !== undefined || this.closed;
    }, `the response to request ${id}`);
    if (found === undefined) throw new Error(`connection closed before request ${id} was answered`);
    return found;
  }
}

const sockets: Raw[] = [];
const wires: WireClient[] = [];
afterEach(() => {
  for (const r of sockets.splice(0)) r.socket.destroy();
  for (const w of wires.splice(0)) w.close();
});

describe('a node with a small maxFrameSize', () => {
  let cluster: LocalCluster;
  let port: number;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8, maxFrameSize: LIMIT, frameTimeoutMs: 2000, caches: { c: {} } });
    port = cluster.node(cluster.nodeIds[0]!).port;
  });
  afterAll(async () => {
    await cluster.stop();
  });

  async function raw(): Promise<Raw> {
    const r = await Raw.connect(port);
    sockets.push(r);
    const ok = await r.handshake();
    expect(ok.kind).toBe(FrameKind.HANDSHAKE_OK);
    return r;
  }

  it('announces its limit in HANDSHAKE_OK', async () => {
    const r = await raw();
    const w = new WireClient({ host: '127.0.0.1', port, sessionId: 'announce' });
    wires.push(w);
    expect((await w.ready).maxFrameSize).toBe(LIMIT);
    r.socket.write(encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 0, payload: {} }));
    expect((await r.response(1)).flags).toBe(0);
  });

  it('answers a request over the limit with FRAME_TOO_LARGE for its id and keeps the connection: requests around it are served', async () => {
    const r = await raw();
    const key = encodeKey('big');
    const put = (id: number, size: number): Uint8Array =>
      encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_PUT, id, flags: 0, payload: { cache: 'c', key, seq: id, value: new Uint8Array(size) } });
    const big = put(2, 3 * LIMIT);
    // before, the oversized request, and after it, in one write and then cut at awkward places
    r.socket.write(Buffer.concat([put(1, 10), big.subarray(0, 7)]));
    r.socket.write(big.subarray(7, 5000));
    r.socket.write(Buffer.concat([big.subarray(5000), put(3, 20)]));
    const refused = await r.response(2);
    expect(refused.flags & ResponseFlag.ERROR).not.toBe(0);
    const e = refused.payload as ErrorPayload;
    expect(e.code).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(e.message).toMatch(new RegExp(`request frame of ${big.length - 4} bytes .*exceeds this node's maximum frame size ${LIMIT}`));
    expect((await r.response(1)).flags).toBe(0);
    expect((await r.response(3)).flags).toBe(0);
    r.socket.write(encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 4, flags: 0, payload: { cache: 'c', key } }));
    const got = await r.response(4);
    expect((got.payload as { value: Uint8Array }).value).toHaveLength(20); // put 3 landed, put 2 did not
    expect(r.closed).toBe(false);
  });

  it('still closes the connection on an oversized frame that is not a request', async () => {
    const r = await raw();
    const big = encodeFrame({ kind: FrameKind.RESPONSE, id: 1, flags: 0, topologyVersion: 0, payload: { value: new Uint8Array(2 * LIMIT) } });
    r.socket.write(big);
    await until(() => r.closed, 'the node closing the connection');
  });

  it('refuses an oversized request sent before the handshake with a HANDSHAKE_ERROR and closes', async () => {
    const r = await Raw.connect(port);
    sockets.push(r);
    r.socket.write(MAGIC);
    r.socket.write(encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 0, payload: { pad: new Uint8Array(LIMIT) } }));
    await until(() => r.closed, 'the node closing the connection');
    expect(r.frames).toEqual([{ kind: FrameKind.HANDSHAKE_ERROR, body: { code: ErrorCode.FRAME_TOO_LARGE, message: expect.stringMatching(/maximum frame size 4096/) as unknown } }]);
  });

  it('cuts off a sender whose skipped body stops arriving, after frameTimeoutMs', async () => {
    const r = await raw();
    const big = encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 9, flags: 0, payload: { pad: new Uint8Array(2 * LIMIT) } });
    r.socket.write(big.subarray(0, 100));
    const refused = await r.response(9); // answered once the header is in
    expect((refused.payload as ErrorPayload).code).toBe(ErrorCode.FRAME_TOO_LARGE);
    await until(() => r.closed, 'the frame timeout closing the connection', 10_000);
  });

  it('a WireClient holds its requests to the announced limit: refused before sending, the connection stays open', async () => {
    const w = new WireClient({ host: '127.0.0.1', port, sessionId: 'wire-limit' });
    wires.push(w);
    await w.ready;
    const err: unknown = await w.request(Op.CACHE_PUT, { cache: 'c', key: encodeKey('w'), seq: 1, value: new Uint8Array(LIMIT) }, 3000).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'GRID_FRAME_TOO_LARGE', message: expect.stringMatching(/exceeds the maximum frame size 4096/) as unknown });
    expect(w.open).toBe(true);
    await w.request(Op.CACHE_PUT, { cache: 'c', key: encodeKey('w'), seq: 2, value: new Uint8Array(100) }, 3000);
  });
});

describe('a client that announces a smaller maxFrameSize than the node', () => {
  let cluster: LocalCluster;
  let port: number;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8, caches: { c: {} } });
    port = cluster.node(cluster.nodeIds[0]!).port;
  });
  afterAll(async () => {
    await cluster.stop();
  });

  it('gets FRAME_TOO_LARGE for a response over its limit instead of the frame, and the connection keeps serving', async () => {
    const big = new WireClient({ host: '127.0.0.1', port, sessionId: 'writer' });
    const small = new WireClient({ host: '127.0.0.1', port, sessionId: 'reader', maxFrameSize: 1024 });
    wires.push(big, small);
    await Promise.all([big.ready, small.ready]);
    const key = encodeKey('large-answer');
    await big.request(Op.CACHE_PUT, { cache: 'c', key, seq: 1, value: new Uint8Array(2000) }, 3000);
    const err: unknown = await small.request(Op.CACHE_GET, { cache: 'c', key }, 3000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireResponseError);
    expect(err).toMatchObject({ code: 'GRID_FRAME_TOO_LARGE', retryable: false });
    expect(small.open).toBe(true);
    await big.request(Op.CACHE_PUT, { cache: 'c', key, seq: 2, value: new Uint8Array(500) }, 3000);
    expect(((await small.request(Op.CACHE_GET, { cache: 'c', key }, 3000)) as { value: Uint8Array }).value).toHaveLength(500);
  });
});
