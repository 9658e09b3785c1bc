/**
 * fast-check arbitraries for every message of the protocol: each client op's request and response
 * payload, peer payloads, error payloads, pushes, handshakes, and whole frames.
 */
import fc from 'fast-check';
import {
  DEFAULT_MAX_FRAME_SIZE,
  ErrorCode,
  FrameKind,
  MAX_MAX_FRAME_SIZE,
  MAX_TTL_MS,
  MIN_MAX_FRAME_SIZE,
  Op,
  PushKind,
  ResponseFlag,
  type Frame,
  type HandshakeOk,
  type HandshakeRequest,
  type PartitionMap,
  type RequestFrame,
  type ResponseFrame,
} from '@gridlink/protocol';

const rec = <T extends Record<string, fc.Arbitrary<unknown>>>(
  model: T,
  optional: (keyof T)[] = [],
): fc.Arbitrary<{ [K in keyof T]: T[K] extends fc.Arbitrary<infer U> ? U : never }> =>
  fc.record(model, {
    requiredKeys: Object.keys(model).filter((k) => !optional.includes(k)),
    noNullPrototype: true,
  }) as never;

export const bytes = fc.uint8Array({ maxLength: 48 });
export const bigBytes = fc.uint8Array({ minLength: 0, maxLength: 3000 });
export const text = (min: number, max: number): fc.Arbitrary<string> =>
  fc.oneof(fc.string({ minLength: min, maxLength: max }), fc.string({ unit: 'binary', minLength: min, maxLength: max }));
export const cacheName = text(1, 40);
export const uint = fc.oneof(fc.nat(1000), fc.maxSafeNat());
export const safeInt = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.maxSafeInteger()).map((n) => (Object.is(n, -0) ? 0 : n));
/** Lock leases and waits: the node arms timers for them, so at most 2^31 - 1 ms. */
export const lease = fc.oneof(fc.integer({ min: 1, max: 100_000 }), fc.integer({ min: 1, max: 2 ** 31 - 1 }));
export const wait = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: 2 ** 31 - 1 }));
export const u32 = fc.nat({ max: 0xffffffff });
export const u16 = fc.nat({ max: 0xffff });
export const u8 = fc.nat({ max: 0xff });

const seq = uint;
const ack = uint;
const owner = fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 64 });
/** A write's TTL: at most MAX_TTL_MS (2^52 ms), whose expiry stays a safe integer. */
const ttlMs = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: MAX_TTL_MS }), fc.constant(MAX_TTL_MS));

/** Request payload arbitrary per client op. */
export const requestPayloads: Record<number, fc.Arbitrary<Record<string, unknown>>> = {
  [Op.HEARTBEAT]: fc.constant({}),
  [Op.TOPOLOGY]: rec({ knownVersion: uint }, ['knownVersion']),
  [Op.CACHE_CREATE]: rec({ cache: cacheName, config: rec({ ttlMs, backups: fc.nat(5) }, ['ttlMs', 'backups']) }),
  [Op.CACHE_GET]: rec({ cache: cacheName, key: bytes }),
  [Op.CACHE_GET_ALL]: rec({ cache: cacheName, keys: fc.array(bytes, { maxLength: 8 }) }),
  [Op.CACHE_PUT]: rec({ cache: cacheName, key: bytes, seq, ack, value: bigBytes, ttlMs }, ['ack', 'ttlMs']),
  [Op.CACHE_PUT_ALL]: rec(
    { cache: cacheName, seq, ack, entries: fc.array(fc.tuple(bytes, bytes), { maxLength: 8 }), ttlMs },
    ['ack', 'ttlMs'],
  ),
  [Op.CACHE_PUT_IF_ABSENT]: rec({ cache: cacheName, key: bytes, seq, ack, value: bytes, ttlMs }, ['ack', 'ttlMs']),
  [Op.CACHE_REPLACE]: rec({ cache: cacheName, key: bytes, seq, ack, value: bytes, ttlMs }, ['ack', 'ttlMs']),
  [Op.CACHE_REPLACE_IF_EQUALS]: rec({ cache: cacheName, key: bytes, seq, ack, expected: bytes, value: bytes, ttlMs }, ['ack', 'ttlMs']),
  [Op.CACHE_REMOVE]: rec({ cache: cacheName, key: bytes, seq, ack }, ['ack']),
  [Op.CACHE_REMOVE_IF_EQUALS]: rec({ cache: cacheName, key: bytes, seq, ack, expected: bytes }, ['ack']),
  [Op.CACHE_GET_AND_PUT]: rec({ cache: cacheName, key: bytes, seq, ack, value: bytes, ttlMs }, ['ack', 'ttlMs']),
  [Op.CACHE_GET_AND_REMOVE]: rec({ cache: cacheName, key: bytes, seq, ack }, ['ack']),
  [Op.CACHE_INCREMENT]: rec({ cache: cacheName, key: bytes, seq, ack, delta: safeInt, initial: safeInt, ttlMs }, ['ack', 'initial', 'ttlMs']),
  [Op.CACHE_CONTAINS_KEY]: rec({ cache: cacheName, key: bytes }),
  [Op.CACHE_SIZE]: rec({ cache: cacheName }),
  [Op.CACHE_CLEAR]: rec({ cache: cacheName, seq, ack }, ['ack']),
  [Op.CACHE_SCAN]: rec({
    cache: cacheName,
    partition: fc.nat(4095),
    cursor: fc.option(bytes, { nil: null }),
    count: fc.integer({ min: 1, max: 65536 }),
  }),
  [Op.LOCK_TRY_ACQUIRE]: rec({ seq, ack, owner, name: bytes, leaseMs: lease }, ['ack', 'owner']),
  [Op.LOCK_ACQUIRE]: rec({ seq, ack, owner, name: bytes, leaseMs: lease, waitMs: wait }, ['ack', 'owner']),
  [Op.LOCK_RELEASE]: rec({ seq, ack, owner, name: bytes, token: uint }, ['ack', 'owner']),
  [Op.LOCK_RENEW]: rec({ seq, ack, owner, name: bytes, token: uint, leaseMs: lease }, ['ack', 'owner']),
  [Op.LOCK_TRY_ACQUIRE_GET]: rec({ cache: cacheName, key: bytes, seq, ack, owner, leaseMs: lease, ifAbsent: fc.boolean() }, ['ack', 'owner', 'ifAbsent']),
  [Op.LOCK_PUT_RELEASE]: rec({ cache: cacheName, key: bytes, seq, ack, owner, token: uint, value: bigBytes, ttlMs }, ['ack', 'owner', 'ttlMs']),
};

export const CLIENT_OPS: number[] = Object.keys(requestPayloads).map(Number);
export const PEER_OPS: number[] = [Op.PEER_FORWARD, Op.PEER_REPLICATE, Op.PEER_STATE_PULL, Op.PEER_SIZE, Op.PEER_CLEAR];

const node = rec(
  { id: text(1, 20), host: fc.domain(), port: u16, zone: text(0, 10), alive: fc.boolean() },
  ['zone'],
);
export const partitionMap: fc.Arbitrary<PartitionMap> = fc
  .tuple(uint, fc.integer({ min: 1, max: 64 }), fc.nat(3), fc.array(node, { maxLength: 6 }))
  .chain(([version, partitions, backups, nodes]) =>
    fc
      .array(fc.integer({ min: -1, max: nodes.length - 1 }), { minLength: partitions, maxLength: partitions })
      .map((primaries) => ({ version, partitions, backups, nodes, primaries })),
  );

const applied = rec({ applied: fc.boolean() });
const valueOrNull = rec({ value: fc.option(bytes, { nil: null }) });
const lockResult = rec({ acquired: fc.boolean(), token: uint, heldForMs: uint }, ['token', 'heldForMs']);

/** Response payload arbitrary per client op. */
export const responsePayloads: Record<number, fc.Arbitrary<unknown>> = {
  [Op.HEARTBEAT]: fc.constant({}),
  [Op.TOPOLOGY]: partitionMap,
  [Op.CACHE_CREATE]: fc.constant({}),
  [Op.CACHE_GET]: rec({ value: fc.option(bigBytes, { nil: null }) }),
  [Op.CACHE_GET_ALL]: rec({ values: fc.array(fc.option(bytes, { nil: null }), { maxLength: 8 }) }),
  [Op.CACHE_PUT]: fc.constant({}),
  [Op.CACHE_PUT_ALL]: fc.constant({}),
  [Op.CACHE_PUT_IF_ABSENT]: applied,
  [Op.CACHE_REPLACE]: applied,
  [Op.CACHE_REPLACE_IF_EQUALS]: applied,
  [Op.CACHE_REMOVE]: applied,
  [Op.CACHE_REMOVE_IF_EQUALS]: applied,
  [Op.CACHE_GET_AND_PUT]: valueOrNull,
  [Op.CACHE_GET_AND_REMOVE]: valueOrNull,
  [Op.CACHE_INCREMENT]: rec({ value: safeInt }),
  [Op.CACHE_CONTAINS_KEY]: rec({ found: fc.boolean() }),
  [Op.CACHE_SIZE]: rec({ size: uint }),
  [Op.CACHE_CLEAR]: fc.constant({}),
  [Op.CACHE_SCAN]: rec({ keys: fc.array(bytes, { maxLength: 8 }), cursor: fc.option(bytes, { nil: null }) }),
  [Op.LOCK_TRY_ACQUIRE]: lockResult,
  [Op.LOCK_ACQUIRE]: lockResult,
  [Op.LOCK_RELEASE]: rec({ released: fc.boolean() }),
  [Op.LOCK_RENEW]: rec({ renewed: fc.boolean() }),
  [Op.LOCK_TRY_ACQUIRE_GET]: rec(
    { acquired: fc.boolean(), token: uint, heldForMs: uint, value: fc.option(bigBytes, { nil: null }) },
    ['token', 'heldForMs'],
  ),
  [Op.LOCK_PUT_RELEASE]: rec({ released: fc.boolean() }),
};

/** Any MessagePack value that round-trips exactly (no -0, no lone surrogates, no undefined). */
export const msgpackValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    safeInt,
    fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)),
    text(0, 20),
    bytes,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(text(0, 8).filter((k) => k !== '__proto__'), tie('value'), { maxKeys: 4, noNullPrototype: true }),
  ),
})).value;

export const errorPayload = rec(
  {
    code: fc.oneof(fc.constantFrom(...(Object.values(ErrorCode) as number[])), u16),
    message: text(0, 80),
    partition: fc.nat(65535),
  },
  ['partition'],
);

/** A frame size limit a handshake may announce (ADR 0009): a u32 of at least MIN_MAX_FRAME_SIZE. */
export const frameLimit = fc.oneof(
  fc.integer({ min: MIN_MAX_FRAME_SIZE, max: MAX_MAX_FRAME_SIZE }),
  fc.constantFrom(MIN_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
);

export const handshakeRequest: fc.Arbitrary<HandshakeRequest> = fc
  .tuple(
    u16,
    u16,
    rec(
      { features: u32, sessionId: text(1, 32), authToken: text(0, 64), clientName: text(0, 32), clusterId: text(0, 32), maxFrameSize: frameLimit },
      ['authToken', 'clientName', 'clusterId', 'maxFrameSize'],
    ),
  )
  .map(([a, b, rest]) => ({ minVersion: Math.min(a, b), maxVersion: Math.max(a, b), ...rest }));

export const handshakeOk: fc.Arbitrary<HandshakeOk> = rec(
  {
    version: u16,
    features: u32,
    nodeId: text(1, 32),
    clusterId: text(0, 32),
    topologyVersion: uint,
    partitions: fc.integer({ min: 1, max: 0xffffffff }),
    idleTimeoutMs: uint,
    maxFrameSize: frameLimit,
  },
  ['maxFrameSize'],
);

export const requestFrame: fc.Arbitrary<RequestFrame> = fc.oneof(
  fc
    .constantFrom(...CLIENT_OPS)
    .chain((op) =>
      fc.tuple(fc.constant(op), requestPayloads[op]!, u32, u8).map(([o, payload, id, flags]) => ({
        kind: FrameKind.REQUEST,
        op: o,
        id,
        flags,
        payload,
      })),
    ) as fc.Arbitrary<RequestFrame>,
  fc
    .tuple(fc.oneof(fc.constantFrom(...PEER_OPS), fc.integer({ min: 100, max: 0xffff })), msgpackValue, u32, u8)
    .map(([op, payload, id, flags]) => ({ kind: FrameKind.REQUEST, op, id, flags, payload }) as RequestFrame),
);

const flagsWithout = (bit: number): fc.Arbitrary<number> => u8.map((f) => f & ~bit);

export const responseFrame: fc.Arbitrary<ResponseFrame> = fc.oneof(
  fc
    .constantFrom(...CLIENT_OPS)
    .chain((op) => responsePayloads[op]!)
    .chain((payload) =>
      fc.record({
        kind: fc.constant(FrameKind.RESPONSE),
        id: u32,
        flags: flagsWithout(ResponseFlag.ERROR),
        topologyVersion: uint,
        payload: fc.constant(payload),
      }),
    ),
  fc.record({
    kind: fc.constant(FrameKind.RESPONSE),
    id: u32,
    flags: u8.map((f) => f | ResponseFlag.ERROR),
    topologyVersion: uint,
    payload: errorPayload,
  }),
  fc.record({
    kind: fc.constant(FrameKind.RESPONSE),
    id: u32,
    flags: flagsWithout(ResponseFlag.ERROR),
    topologyVersion: uint,
    payload: msgpackValue,
  }),
);

export const pushFrame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    kind: fc.constant(FrameKind.PUSH),
    push: fc.constant(PushKind.TOPOLOGY_CHANGED),
    topologyVersion: uint,
    payload: rec({ version: uint }),
  }),
  fc.record({
    kind: fc.constant(FrameKind.PUSH),
    push: fc.constant(PushKind.NODE_STOPPING),
    topologyVersion: uint,
    payload: fc.constant({}),
  }),
  // Push kinds this version does not know pass through untouched (receivers ignore them).
  fc.record({
    kind: fc.constant(FrameKind.PUSH),
    push: fc.integer({ min: 3, max: 0xffff }),
    topologyVersion: uint,
    payload: msgpackValue,
  }),
) as fc.Arbitrary<Frame>;

export const handshakeFrames: fc.Arbitrary<Frame> = fc.oneof(
  handshakeRequest.map((body) => ({ kind: FrameKind.HANDSHAKE, body })),
  handshakeOk.map((body) => ({ kind: FrameKind.HANDSHAKE_OK, body })),
  rec({ code: u16, message: text(0, 80) }).map((body) => ({ kind: FrameKind.HANDSHAKE_ERROR, body })),
);

export const anyFrame: fc.Arbitrary<Frame> = fc.oneof(requestFrame, responseFrame, pushFrame, handshakeFrames);

/** Cuts `bytes` into chunks at the given positions (taken modulo its length, deduplicated). */
export function cut(bytes: Uint8Array, positions: number[]): Uint8Array[] {
  if (bytes.length === 0) return [];
  const at = [...new Set(positions.map((p) => p % bytes.length))].filter((p) => p > 0).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of at) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  out.push(bytes.subarray(prev));
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** How to cut a byte stream into socket chunks. */
export type Chunking = { kind: 'whole' } | { kind: 'bytes' } | { kind: 'random'; positions: number[] };
export const chunking: fc.Arbitrary<Chunking> = fc.oneof(
  fc.constant({ kind: 'whole' } as const),
  fc.constant({ kind: 'bytes' } as const),
  fc.array(fc.nat(), { maxLength: 40 }).map((positions) => ({ kind: 'random', positions }) as const),
);

export function applyChunking(bytes: Uint8Array, c: Chunking): Uint8Array[] {
  switch (c.kind) {
    case 'whole':
      return [bytes];
    case 'bytes':
      return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    case 'random':
      return cut(bytes, c.positions);
  }
}
