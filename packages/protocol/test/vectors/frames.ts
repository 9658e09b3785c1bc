/**
 * Golden frames: one of each message of the protocol, with its exact bytes. `frames.json` is
 * generated from this list (`npx tsx packages/protocol/test/vectors/frames.ts`) and checked by
 * vectors.test.ts in both directions, so other implementations can test against it.
 *
 * JSON form of a frame: as the TypeScript Frame, with byte arrays written as {"$bin": "<hex>"}.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encodeFrame, ErrorCode, FrameKind, Op, PushKind, RequestFlag, ResponseFlag, type Frame } from '../../src/index.js';

const b = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
const key = b('05057573657231'); // encodeKey("user1")
const value = b('a568656c6c6f'); // MessagePack "hello"
const req = (op: number, payload: unknown, id = 1, flags = 0): Frame => ({ kind: FrameKind.REQUEST, op, id, flags, payload }) as Frame;
const res = (payload: unknown, id = 1, flags = 0, topologyVersion = 12): Frame => ({ kind: FrameKind.RESPONSE, id, flags, topologyVersion, payload });

export const GOLDEN: { name: string; frame: Frame }[] = [
  { name: 'handshake', frame: { kind: FrameKind.HANDSHAKE, body: { minVersion: 1, maxVersion: 1, features: 3, sessionId: 'b3f1c2d4e5', clientName: 'api' } } },
  { name: 'handshake with auth and cluster', frame: { kind: FrameKind.HANDSHAKE, body: { minVersion: 1, maxVersion: 2, features: 1, sessionId: 's-1', authToken: 'secret', clusterId: 'prod' } } },
  { name: 'handshake ok', frame: { kind: FrameKind.HANDSHAKE_OK, body: { version: 1, features: 3, nodeId: 'node-a', clusterId: 'prod', topologyVersion: 12, partitions: 1024, idleTimeoutMs: 30000 } } },
  {
    name: 'handshake with maxFrameSize',
    frame: { kind: FrameKind.HANDSHAKE, body: { minVersion: 1, maxVersion: 1, features: 7, sessionId: 's-2', clientName: 'api', maxFrameSize: 4194304 } },
  },
  {
    name: 'handshake ok with maxFrameSize',
    frame: { kind: FrameKind.HANDSHAKE_OK, body: { version: 1, features: 7, nodeId: 'node-a', clusterId: 'prod', topologyVersion: 12, partitions: 1024, idleTimeoutMs: 30000, maxFrameSize: 65536 } },
  },
  { name: 'handshake error', frame: { kind: FrameKind.HANDSHAKE_ERROR, body: { code: ErrorCode.VERSION_MISMATCH, message: 'no protocol version in common' } } },
  { name: 'HEARTBEAT request', frame: req(Op.HEARTBEAT, {}) },
  { name: 'HEARTBEAT response', frame: res({}) },
  { name: 'TOPOLOGY request', frame: req(Op.TOPOLOGY, { knownVersion: 11 }) },
  {
    name: 'TOPOLOGY response',
    frame: res({
      version: 12,
      partitions: 4,
      backups: 1,
      nodes: [
        { id: 'node-a', host: '10.0.0.1', port: 10800, zone: 'z1', alive: true },
        { id: 'node-b', host: '10.0.0.2', port: 10800, alive: false },
      ],
      primaries: [0, 0, -1, 0],
    }),
  },
  { name: 'CACHE_CREATE request', frame: req(Op.CACHE_CREATE, { cache: 'sessions', config: { ttlMs: 60000, backups: 1 } }) },
  { name: 'CACHE_GET request', frame: req(Op.CACHE_GET, { cache: 'sessions', key }, 0xfffffffe) },
  { name: 'CACHE_GET response (hit)', frame: res({ value }, 0xfffffffe) },
  { name: 'CACHE_GET response (miss, forwarded)', frame: res({ value: null }, 2, ResponseFlag.FORWARDED | ResponseFlag.REFRESH_MAP) },
  { name: 'CACHE_GET_ALL request', frame: req(Op.CACHE_GET_ALL, { cache: 'sessions', keys: [key, b('05016b')] }) },
  { name: 'CACHE_GET_ALL response', frame: res({ values: [value, null] }) },
  { name: 'CACHE_PUT request', frame: req(Op.CACHE_PUT, { cache: 'sessions', key, seq: 41, value }) },
  { name: 'CACHE_PUT request with ttl', frame: req(Op.CACHE_PUT, { cache: 'sessions', key, seq: 300, value, ttlMs: 5000 }) },
  { name: 'CACHE_PUT request with ack', frame: req(Op.CACHE_PUT, { cache: 'sessions', key, seq: 301, ack: 299, value }) },
  { name: 'CACHE_PUT request with ack and ttl', frame: req(Op.CACHE_PUT, { cache: 'sessions', key, seq: 302, ack: 301, value, ttlMs: 5000 }) },
  { name: 'CACHE_PUT_ALL request', frame: req(Op.CACHE_PUT_ALL, { cache: 'sessions', seq: 42, entries: [[key, value]] }) },
  { name: 'CACHE_PUT_IF_ABSENT request', frame: req(Op.CACHE_PUT_IF_ABSENT, { cache: 'sessions', key, seq: 43, value }) },
  { name: 'applied response', frame: res({ applied: true }) },
  { name: 'CACHE_REPLACE_IF_EQUALS request', frame: req(Op.CACHE_REPLACE_IF_EQUALS, { cache: 'sessions', key, seq: 44, expected: value, value: b('a0') }) },
  { name: 'CACHE_REMOVE request', frame: req(Op.CACHE_REMOVE, { cache: 'sessions', key, seq: 45 }) },
  { name: 'CACHE_GET_AND_REMOVE request', frame: req(Op.CACHE_GET_AND_REMOVE, { cache: 'sessions', key, seq: 46 }) },
  { name: 'CACHE_INCREMENT request', frame: req(Op.CACHE_INCREMENT, { cache: 'counters', key, seq: 2 ** 40, delta: -3, initial: 100 }) },
  { name: 'CACHE_INCREMENT response', frame: res({ value: 97 }) },
  { name: 'CACHE_CONTAINS_KEY response', frame: res({ found: false }) },
  { name: 'CACHE_SIZE response', frame: res({ size: 70000 }) },
  { name: 'CACHE_CLEAR request', frame: req(Op.CACHE_CLEAR, { cache: 'sessions', seq: 47 }) },
  { name: 'CACHE_SCAN request', frame: req(Op.CACHE_SCAN, { cache: 'sessions', partition: 513, cursor: null, count: 100 }) },
  { name: 'CACHE_SCAN response', frame: res({ keys: [key], cursor: b('0105057573657231') }) },
  { name: 'LOCK_TRY_ACQUIRE request', frame: req(Op.LOCK_TRY_ACQUIRE, { seq: 48, name: b('05046a6f6231'), leaseMs: 10000 }) },
  { name: 'LOCK_ACQUIRE request', frame: req(Op.LOCK_ACQUIRE, { seq: 49, name: b('05046a6f6231'), leaseMs: 10000, waitMs: 2000 }) },
  {
    name: 'LOCK_TRY_ACQUIRE request with owner and ack',
    frame: req(Op.LOCK_TRY_ACQUIRE, { seq: 52, ack: 50, name: b('05046a6f6231'), owner: 'h7Kq2mZx9PaLw3Rt', leaseMs: 10000 }),
  },
  { name: 'lock acquired response', frame: res({ acquired: true, token: 17 }) },
  { name: 'lock not acquired response', frame: res({ acquired: false, heldForMs: 4200 }) },
  { name: 'LOCK_RELEASE request', frame: req(Op.LOCK_RELEASE, { seq: 50, name: b('05046a6f6231'), token: 17 }) },
  { name: 'LOCK_RENEW request', frame: req(Op.LOCK_RENEW, { seq: 51, name: b('05046a6f6231'), token: 17, leaseMs: 10000 }) },
  { name: 'LOCK_RELEASE response', frame: res({ released: true }) },
  {
    name: 'LOCK_TRY_ACQUIRE_GET request',
    frame: req(Op.LOCK_TRY_ACQUIRE_GET, { cache: 'records', key: b('05046a6f6231'), seq: 53, owner: 'h7Kq2mZx9PaLw3Rt', leaseMs: 10000 }),
  },
  { name: 'LOCK_TRY_ACQUIRE_GET response (acquired, nothing stored)', frame: res({ acquired: true, token: 18, value: null }) },
  { name: 'LOCK_TRY_ACQUIRE_GET response (held, record stored)', frame: res({ acquired: false, heldForMs: 900, value }) },
  {
    name: 'LOCK_PUT_RELEASE request',
    frame: req(Op.LOCK_PUT_RELEASE, { cache: 'records', key: b('05046a6f6231'), seq: 54, owner: 'h7Kq2mZx9PaLw3Rt', token: 18, value, ttlMs: 86400000 }),
  },
  {
    name: 'error response NOT_PRIMARY',
    frame: res({ code: ErrorCode.NOT_PRIMARY, message: 'node node-b is not the primary of partition 7', partition: 7 }, 3, ResponseFlag.ERROR | ResponseFlag.REFRESH_MAP, 13),
  },
  { name: 'error response BAD_REQUEST', frame: res({ code: ErrorCode.BAD_REQUEST, message: 'CACHE_GET: missing field "key"' }, 4, ResponseFlag.ERROR) },
  { name: 'peer request (opaque payload, NO_FORWARD)', frame: req(Op.PEER_FORWARD, [1, 'x', { y: null }], 5, RequestFlag.NO_FORWARD) },
  { name: 'TOPOLOGY_CHANGED push', frame: { kind: FrameKind.PUSH, push: PushKind.TOPOLOGY_CHANGED, topologyVersion: 2 ** 33, payload: { version: 2 ** 33 } } },
  { name: 'NODE_STOPPING push', frame: { kind: FrameKind.PUSH, push: PushKind.NODE_STOPPING, topologyVersion: 13, payload: {} } },
];

/** Frame → JSON-safe value (byte arrays as {"$bin": hex}). */
export function toJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') };
  if (Array.isArray(v)) return v.map(toJson);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]));
  return v;
}

/** The inverse of toJson. */
export function fromJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromJson);
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o.$bin === 'string' && Object.keys(o).length === 1) return b(o.$bin);
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, fromJson(x)]));
  }
  return v;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = GOLDEN.map(({ name, frame }) => ({ name, frame: toJson(frame), hex: Buffer.from(encodeFrame(frame)).toString('hex') }));
  const path = fileURLToPath(new URL('./frames.json', import.meta.url));
  writeFileSync(path, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${out.length} frames to ${path}`);
}
