/**
 * The gridlink wire contract: op codes, frame shapes and the payload of every message.
 *
 * This file is the single source of truth for what client and node exchange. docs/protocol.md
 * describes the same thing in prose and byte layouts; keep them in step.
 *
 * Conventions:
 * - Keys travel as their canonical bytes (`encodeKey` from @gridlink/affinity); the node hashes
 *   those bytes to find the partition and never needs to decode them.
 * - Values travel as opaque bytes; the client serialises (MessagePack by default).
 * - Counters (`CACHE_INCREMENT`) are stored as the MessagePack encoding of an integer, so the
 *   client's default serializer reads them back as numbers.
 * - Every mutating request carries `seq`: with the session id sent in the handshake it forms the
 *   (session, sequence) pair the primary uses to apply a retried mutation exactly once. It may
 *   also carry `ack`, the lowest seq the client may still retry (ADR 0018): the nodes then forget
 *   the outcomes below it and refuse requests below it as stale duplicates.
 * - Lock acquisitions may carry `owner`, the id of the acquiring handle (ADR 0020): the lock is
 *   held by that handle, so two acquisitions through one session exclude each other.
 * - Durations are milliseconds. Topology versions and fencing tokens are non-negative integers
 *   below 2^53.
 */

/** Bytes every client sends first, before the handshake frame: ASCII "GLNK". */
export const MAGIC = new Uint8Array([0x47, 0x4c, 0x4e, 0x4b]);

/** Protocol versions this build speaks. The handshake settles on the highest common one. */
export const PROTOCOL_VERSION = 1;
export const MIN_PROTOCOL_VERSION = 1;

/** Default port of a grid node. */
export const DEFAULT_PORT = 10800;

/** Default maximum size of one frame (header + payload), in bytes. */
export const DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024;
/** Smallest accepted `maxFrameSize` (a frame this size can still carry any handshake error). */
export const MIN_MAX_FRAME_SIZE = 256;
/** Largest `maxFrameSize` the u32 length prefix can express. */
export const MAX_MAX_FRAME_SIZE = 0xffffffff;

/** Feature bits negotiated in the handshake (the intersection of both sides' bits is in force). */
export const Feature = {
  /** The node pushes TOPOLOGY_CHANGED messages to this connection. */
  TOPOLOGY_PUSH: 1 << 0,
  /** The node accepts LOCK_* operations. */
  LOCKS: 1 << 1,
  /** The node accepts `ifAbsent` on LOCK_TRY_ACQUIRE_GET. */
  LOCK_GET_IF_ABSENT: 1 << 2,
  /**
   * Between nodes: the node installs partition snapshots whose cache entries come packed in
   * byte blobs (`SnapshotCache.packed`, ADR 0080). Clients ignore it.
   */
  PACKED_SNAPSHOTS: 1 << 3,
} as const;
export const ALL_FEATURES = Feature.TOPOLOGY_PUSH | Feature.LOCKS | Feature.LOCK_GET_IF_ABSENT | Feature.PACKED_SNAPSHOTS;

/** Kind byte that starts every frame body. */
export const FrameKind = {
  HANDSHAKE: 0,
  HANDSHAKE_OK: 1,
  HANDSHAKE_ERROR: 2,
  REQUEST: 3,
  RESPONSE: 4,
  PUSH: 5,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/** Flags carried by a response frame. */
export const ResponseFlag = {
  /** The payload is an ErrorPayload, not the op's result. */
  ERROR: 1 << 0,
  /** The request was misrouted or the map is stale: refresh the partition map. */
  REFRESH_MAP: 1 << 1,
  /** The request was forwarded to the partition's primary in one hop. */
  FORWARDED: 1 << 2,
} as const;

/** Flags carried by a request frame. */
export const RequestFlag = {
  /** Node-internal: this request was already forwarded once and must not be forwarded again. */
  NO_FORWARD: 1 << 0,
} as const;

/** Operation codes. 1-99 are client operations, 100+ are node-to-node (peer) operations. */
export const Op = {
  HEARTBEAT: 1,
  TOPOLOGY: 2,
  CACHE_CREATE: 3,

  CACHE_GET: 10,
  CACHE_GET_ALL: 11,
  CACHE_PUT: 12,
  CACHE_PUT_ALL: 13,
  CACHE_PUT_IF_ABSENT: 14,
  CACHE_REPLACE: 15,
  CACHE_REPLACE_IF_EQUALS: 16,
  CACHE_REMOVE: 17,
  CACHE_REMOVE_IF_EQUALS: 18,
  CACHE_GET_AND_PUT: 19,
  CACHE_GET_AND_REMOVE: 20,
  CACHE_INCREMENT: 21,
  CACHE_CONTAINS_KEY: 22,
  CACHE_SIZE: 23,
  CACHE_CLEAR: 24,
  CACHE_SCAN: 25,

  LOCK_TRY_ACQUIRE: 40,
  LOCK_ACQUIRE: 41,
  LOCK_RELEASE: 42,
  LOCK_RENEW: 43,
  /**
   * Lock + read-your-state (ADR 0036): try to take the lock named by `key` and, in the same
   * step on the primary, read the entry stored under that same `key` in `cache`.
   */
  LOCK_TRY_ACQUIRE_GET: 44,
  /** Store `value` under `key` in `cache` and release the lock named by `key`, fenced by its token. */
  LOCK_PUT_RELEASE: 45,

  /** Peer ops: payloads are defined by @gridlink/node and opaque to the protocol package. */
  PEER_FORWARD: 100,
  PEER_REPLICATE: 101,
  PEER_STATE_PULL: 102,
  PEER_SIZE: 103,
  PEER_CLEAR: 104,
  PEER_PROMISE: 105,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Kinds of server-pushed messages. */
export const PushKind = {
  /** The topology version moved on: payload TopologyChangedPush. */
  TOPOLOGY_CHANGED: 1,
  /** The node is shutting down gracefully: stop sending new requests on this connection. */
  NODE_STOPPING: 2,
} as const;
export type PushKind = (typeof PushKind)[keyof typeof PushKind];

// ---------------------------------------------------------------------------------------------
// Handshake

export interface HandshakeRequest {
  /** Lowest and highest protocol version the client speaks. */
  minVersion: number;
  maxVersion: number;
  features: number;
  /** Client session id: a random id, one per client instance, shared by all its connections. */
  sessionId: string;
  /** Optional bearer token checked by the node when it is configured with auth. */
  authToken?: string;
  /** Free-form client name, for the node's logs and metrics. */
  clientName?: string;
  /** Refuse the connection unless the node belongs to this cluster. */
  clusterId?: string;
  /**
   * Largest frame the client accepts (its length field, ADR 0009): the node answers a response
   * that would be larger with a FRAME_TOO_LARGE error for that request instead. Absent: the
   * node's own limit applies (what clients before this field got).
   */
  maxFrameSize?: number;
}

export interface HandshakeOk {
  version: number;
  features: number;
  nodeId: string;
  clusterId: string;
  topologyVersion: number;
  partitions: number;
  /** The node closes a connection that sends nothing for this long (heartbeats count). */
  idleTimeoutMs: number;
  /**
   * Largest frame the node accepts (its length field, ADR 0009): a client refuses, before
   * sending, a request that would be larger. Absent (nodes before this field): unknown, and the
   * client keeps to its own limit.
   */
  maxFrameSize?: number;
}

export interface HandshakeError {
  code: number;
  message: string;
}

// ---------------------------------------------------------------------------------------------
// Payloads

export type Bytes = Uint8Array;

export interface CacheConfig {
  /** Default time to live of entries, in ms; 0 or absent = no expiry. */
  ttlMs?: number;
  /**
   * Synchronous backups of this cache (absent: the cluster's), 0 to 16. The cluster ranks each
   * partition's owners as deep as the most demanding cache; this cache lives on the first
   * `backups + 1` of them. Above 16 is refused (BAD_REQUEST).
   */
  backups?: number;
  /** What operations on a lost partition do (see PartitionLossPolicy). Default READ_WRITE_SAFE. */
  partitionLossPolicy?: PartitionLossPolicy;
}

/**
 * READ_WRITE_SAFE: operations on a lost partition fail with PARTITION_LOST, the rest work.
 * READ_ONLY_SAFE: while any partition is lost, every write to the cache fails with
 * PARTITION_LOST; reads of partitions that survived work. IGNORE: a lost partition is served
 * again at once, empty (reads and writes succeed), and the loss is counted on the node.
 */
export type PartitionLossPolicy = 'READ_WRITE_SAFE' | 'READ_ONLY_SAFE' | 'IGNORE';
export const PARTITION_LOSS_POLICIES: readonly PartitionLossPolicy[] = ['READ_WRITE_SAFE', 'READ_ONLY_SAFE', 'IGNORE'];

export interface NodeInfo {
  id: string;
  host: string;
  port: number;
  zone?: string;
  alive: boolean;
}

/** The partition map the client routes with. */
export interface PartitionMap {
  version: number;
  partitions: number;
  backups: number;
  nodes: NodeInfo[];
  /** primaries[p] = index into `nodes` of partition p's effective primary, or -1 when lost. */
  primaries: number[];
}

interface KeyReq {
  cache: string;
  key: Bytes;
}
interface Mutation {
  /** Per-session sequence number of this mutation (retries reuse it). */
  seq: number;
  /**
   * Optional: the lowest seq this session may still retry (at most `seq`). Every seq below it is
   * settled: the node forgets those outcomes and refuses those seqs as stale duplicates.
   */
  ack?: number;
}
/** Optional id of the acquiring handle, 1..64 ASCII characters, random per acquisition. */
interface LockOwner {
  owner?: string;
}

export interface RequestPayloads {
  [Op.HEARTBEAT]: Record<string, never>;
  [Op.TOPOLOGY]: { knownVersion?: number };
  [Op.CACHE_CREATE]: { cache: string; config: CacheConfig };

  [Op.CACHE_GET]: KeyReq;
  [Op.CACHE_GET_ALL]: { cache: string; keys: Bytes[] };
  [Op.CACHE_PUT]: KeyReq & Mutation & { value: Bytes; ttlMs?: number };
  [Op.CACHE_PUT_ALL]: Mutation & { cache: string; entries: [Bytes, Bytes][]; ttlMs?: number };
  [Op.CACHE_PUT_IF_ABSENT]: KeyReq & Mutation & { value: Bytes; ttlMs?: number };
  [Op.CACHE_REPLACE]: KeyReq & Mutation & { value: Bytes; ttlMs?: number };
  [Op.CACHE_REPLACE_IF_EQUALS]: KeyReq & Mutation & { expected: Bytes; value: Bytes; ttlMs?: number };
  [Op.CACHE_REMOVE]: KeyReq & Mutation;
  [Op.CACHE_REMOVE_IF_EQUALS]: KeyReq & Mutation & { expected: Bytes };
  [Op.CACHE_GET_AND_PUT]: KeyReq & Mutation & { value: Bytes; ttlMs?: number };
  [Op.CACHE_GET_AND_REMOVE]: KeyReq & Mutation;
  [Op.CACHE_INCREMENT]: KeyReq & Mutation & { delta: number; initial?: number; ttlMs?: number };
  [Op.CACHE_CONTAINS_KEY]: KeyReq;
  [Op.CACHE_SIZE]: { cache: string };
  [Op.CACHE_CLEAR]: Mutation & { cache: string };
  /** Scan one partition's keys; `cursor` is opaque, null to start. */
  [Op.CACHE_SCAN]: { cache: string; partition: number; cursor: Bytes | null; count: number };

  [Op.LOCK_TRY_ACQUIRE]: Mutation & LockOwner & { name: Bytes; leaseMs: number };
  [Op.LOCK_ACQUIRE]: Mutation & LockOwner & { name: Bytes; leaseMs: number; waitMs: number };
  [Op.LOCK_RELEASE]: Mutation & LockOwner & { name: Bytes; token: number };
  [Op.LOCK_RENEW]: Mutation & LockOwner & { name: Bytes; token: number; leaseMs: number };
  /** The lock's name is the key's bytes, so the lock and the entry share one partition. */
  /**
   * `ifAbsent` (feature LOCK_GET_IF_ABSENT): when the entry is present, answer it without taking
   * the lock (a read: nothing is replicated or remembered).
   */
  [Op.LOCK_TRY_ACQUIRE_GET]: KeyReq & Mutation & LockOwner & { leaseMs: number; ifAbsent?: boolean };
  /** Applied only when the lock named by `key` is held with `token` (and `owner`, if given). */
  [Op.LOCK_PUT_RELEASE]: KeyReq & Mutation & LockOwner & { token: number; value: Bytes; ttlMs?: number };

  [Op.PEER_FORWARD]: unknown;
  [Op.PEER_REPLICATE]: unknown;
  [Op.PEER_STATE_PULL]: unknown;
  [Op.PEER_SIZE]: unknown;
  [Op.PEER_CLEAR]: unknown;
  [Op.PEER_PROMISE]: unknown;
}

export interface LockResult {
  acquired: boolean;
  /** Fencing token, present when acquired: strictly increases per lock name. */
  token?: number;
  /** Remaining lease of the current holder when not acquired (ms), if known. */
  heldForMs?: number;
}

export interface ResponsePayloads {
  [Op.HEARTBEAT]: Record<string, never>;
  [Op.TOPOLOGY]: PartitionMap;
  [Op.CACHE_CREATE]: Record<string, never>;

  [Op.CACHE_GET]: { value: Bytes | null };
  [Op.CACHE_GET_ALL]: { values: (Bytes | null)[] };
  [Op.CACHE_PUT]: Record<string, never>;
  [Op.CACHE_PUT_ALL]: Record<string, never>;
  [Op.CACHE_PUT_IF_ABSENT]: { applied: boolean };
  [Op.CACHE_REPLACE]: { applied: boolean };
  [Op.CACHE_REPLACE_IF_EQUALS]: { applied: boolean };
  [Op.CACHE_REMOVE]: { applied: boolean };
  [Op.CACHE_REMOVE_IF_EQUALS]: { applied: boolean };
  [Op.CACHE_GET_AND_PUT]: { value: Bytes | null };
  [Op.CACHE_GET_AND_REMOVE]: { value: Bytes | null };
  [Op.CACHE_INCREMENT]: { value: number };
  [Op.CACHE_CONTAINS_KEY]: { found: boolean };
  [Op.CACHE_SIZE]: { size: number };
  [Op.CACHE_CLEAR]: Record<string, never>;
  [Op.CACHE_SCAN]: { keys: Bytes[]; cursor: Bytes | null };

  [Op.LOCK_TRY_ACQUIRE]: LockResult;
  [Op.LOCK_ACQUIRE]: LockResult;
  [Op.LOCK_RELEASE]: { released: boolean };
  [Op.LOCK_RENEW]: { renewed: boolean };
  /** The entry's value whether or not the lock was taken (nil when absent). */
  [Op.LOCK_TRY_ACQUIRE_GET]: LockResult & { value: Bytes | null };
  /** `released: false`: the lock was not held with that token; nothing was stored. */
  [Op.LOCK_PUT_RELEASE]: { released: boolean };

  [Op.PEER_FORWARD]: unknown;
  [Op.PEER_REPLICATE]: unknown;
  [Op.PEER_STATE_PULL]: unknown;
  [Op.PEER_SIZE]: unknown;
  [Op.PEER_CLEAR]: unknown;
  [Op.PEER_PROMISE]: unknown;
}

/** Payload of a response with the ERROR flag. */
export interface ErrorPayload {
  code: number;
  message: string;
  /** Partition concerned, for NOT_PRIMARY / PARTITION_MOVING / PARTITION_LOST. */
  partition?: number;
}

export interface TopologyChangedPush {
  version: number;
}

export interface PushPayloads {
  [PushKind.TOPOLOGY_CHANGED]: TopologyChangedPush;
  [PushKind.NODE_STOPPING]: Record<string, never>;
}

// ---------------------------------------------------------------------------------------------
// Frames (what the decoder yields and the encoder takes)

export interface HandshakeFrame {
  kind: typeof FrameKind.HANDSHAKE;
  body: HandshakeRequest;
}
export interface HandshakeOkFrame {
  kind: typeof FrameKind.HANDSHAKE_OK;
  body: HandshakeOk;
}
export interface HandshakeErrorFrame {
  kind: typeof FrameKind.HANDSHAKE_ERROR;
  body: HandshakeError;
}
export interface RequestFrame<O extends Op = Op> {
  kind: typeof FrameKind.REQUEST;
  op: O;
  /** Request id, unique among a connection's in-flight requests (uint32). */
  id: number;
  flags: number;
  payload: RequestPayloads[O];
}
export interface ResponseFrame {
  kind: typeof FrameKind.RESPONSE;
  id: number;
  flags: number;
  /** Topology version the answering node holds. */
  topologyVersion: number;
  /** The op's result, or an ErrorPayload when flags has ERROR. */
  payload: unknown;
}
export interface PushFrame<K extends PushKind = PushKind> {
  kind: typeof FrameKind.PUSH;
  push: K;
  topologyVersion: number;
  payload: PushPayloads[K];
}

export type Frame =
  | HandshakeFrame
  | HandshakeOkFrame
  | HandshakeErrorFrame
  | RequestFrame
  | ResponseFrame
  | PushFrame;

/** Ops that change state and therefore carry `seq`. */
export const MUTATING_OPS: ReadonlySet<Op> = new Set<Op>([
  Op.CACHE_PUT,
  Op.CACHE_PUT_ALL,
  Op.CACHE_PUT_IF_ABSENT,
  Op.CACHE_REPLACE,
  Op.CACHE_REPLACE_IF_EQUALS,
  Op.CACHE_REMOVE,
  Op.CACHE_REMOVE_IF_EQUALS,
  Op.CACHE_GET_AND_PUT,
  Op.CACHE_GET_AND_REMOVE,
  Op.CACHE_INCREMENT,
  Op.CACHE_CLEAR,
  Op.LOCK_TRY_ACQUIRE,
  Op.LOCK_ACQUIRE,
  Op.LOCK_RELEASE,
  Op.LOCK_RENEW,
  Op.LOCK_TRY_ACQUIRE_GET,
  Op.LOCK_PUT_RELEASE,
]);

/**
 * Ops addressed to one key's partition (routed to its primary). `name` is the key for the
 * LOCK_TRY_ACQUIRE..LOCK_RENEW range; the compound lock ops (44, 45) carry `key`.
 */
export const SINGLE_KEY_OPS: ReadonlySet<Op> = new Set<Op>([
  Op.CACHE_GET,
  Op.CACHE_PUT,
  Op.CACHE_PUT_IF_ABSENT,
  Op.CACHE_REPLACE,
  Op.CACHE_REPLACE_IF_EQUALS,
  Op.CACHE_REMOVE,
  Op.CACHE_REMOVE_IF_EQUALS,
  Op.CACHE_GET_AND_PUT,
  Op.CACHE_GET_AND_REMOVE,
  Op.CACHE_INCREMENT,
  Op.CACHE_CONTAINS_KEY,
  Op.LOCK_TRY_ACQUIRE,
  Op.LOCK_ACQUIRE,
  Op.LOCK_RELEASE,
  Op.LOCK_RENEW,
  Op.LOCK_TRY_ACQUIRE_GET,
  Op.LOCK_PUT_RELEASE,
]);
