/**
 * Error classes of the client. Every error the client hands to callers is a `GridError` with a
 * stable string `code` and a `retryable` flag. `instanceof` works across duplicate installs of the
 * package because each class is branded with a `Symbol.for` key and checks the brand instead of
 * the prototype chain.
 */
import { ErrorCode, errorCodeInfo } from '@gridlink/protocol';

function brand(name: string): symbol {
  return Symbol.for(`gridlink.client.${name}`);
}

const BRANDS = {
  GridError: brand('GridError'),
  GridConnectionError: brand('GridConnectionError'),
  GridTlsError: brand('GridTlsError'),
  GridTimeoutError: brand('GridTimeoutError'),
  GridConfigError: brand('GridConfigError'),
  GridServerError: brand('GridServerError'),
  PartitionLostError: brand('PartitionLostError'),
  LockNotHeldError: brand('LockNotHeldError'),
  LockTimeoutError: brand('LockTimeoutError'),
  GridClosedError: brand('GridClosedError'),
  GridAbortError: brand('GridAbortError'),
  ClusterMismatchError: brand('ClusterMismatchError'),
  GridSerializationError: brand('GridSerializationError'),
} as const;

function hasBrand(value: unknown, key: symbol): boolean {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[key] === true;
}

function mark(target: object, ...keys: symbol[]): void {
  for (const k of keys) Object.defineProperty(target, k, { value: true, enumerable: false });
}

export interface GridErrorOptions {
  cause?: unknown;
}

/** Base class of every error the client throws. */
export class GridError extends Error {
  /** Stable machine-readable code, e.g. `GRID_CONNECTION`. */
  readonly code: string;
  /** Whether the same call may succeed if made again unchanged. */
  readonly retryable: boolean;

  constructor(message: string, code = 'GRID_ERROR', retryable = false, options?: GridErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GridError';
    this.code = code;
    this.retryable = retryable;
    mark(this, BRANDS.GridError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridError);
  }
}

/** Per-endpoint cause of a failed connection attempt. */
export interface EndpointFailure {
  endpoint: string;
  cause: string;
  /**
   * The error the attempt failed with, when it failed (not when it was still waiting or never
   * tried): a `GridServerError` when the node refused the handshake (`code` GRID_AUTH_FAILED,
   * GRID_CLUSTER_MISMATCH, GRID_VERSION_MISMATCH…), else a `GridConnectionError` or the socket's
   * error.
   */
  error?: Error;
}

/** A connection could not be made or was lost. Requests failing with it are retried elsewhere. */
export class GridConnectionError extends GridError {
  /** Each endpoint's cause when no connection could be made at all. */
  readonly endpoints: EndpointFailure[];

  constructor(message: string, options?: GridErrorOptions & { endpoints?: EndpointFailure[]; retryable?: boolean; code?: string }) {
    super(message, options?.code ?? 'GRID_CONNECTION', options?.retryable ?? true, options);
    this.name = 'GridConnectionError';
    this.endpoints = options?.endpoints ?? [];
    mark(this, BRANDS.GridConnectionError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridConnectionError);
  }
}

/**
 * The TLS handshake with a node failed: its certificate was not trusted (an unknown CA, a name
 * that does not match, expired), no protocol version or cipher in common, or the node does not
 * serve TLS. Not retryable unless the connection was only cut during the handshake (a reset): the
 * same settings would fail the same way. `cause` is node:tls's error (its `code`, e.g.
 * DEPTH_ZERO_SELF_SIGNED_CERT).
 */
export class GridTlsError extends GridConnectionError {
  constructor(message: string, options?: GridErrorOptions & { retryable?: boolean }) {
    super(message, { ...options, code: 'GRID_TLS', retryable: options?.retryable ?? false });
    this.name = 'GridTlsError';
    mark(this, BRANDS.GridTlsError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridTlsError);
  }
}

/**
 * The operation's deadline (operationTimeout, retries included) passed: code GRID_TIMEOUT, not
 * retryable. One attempt's requestTimeout passing is code GRID_REQUEST_TIMEOUT, retryable.
 */
export class GridTimeoutError extends GridError {
  constructor(message: string, options?: GridErrorOptions & { code?: string; retryable?: boolean }) {
    super(message, options?.code ?? 'GRID_TIMEOUT', options?.retryable ?? false, options);
    this.name = 'GridTimeoutError';
    mark(this, BRANDS.GridTimeoutError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridTimeoutError);
  }
}

/** A configuration field is invalid; `field` names it. */
export class GridConfigError extends GridError {
  readonly field: string;
  /** What is wrong with the field, without the field's name (the message is `invalid config "<field>": <reason>`). */
  readonly reason: string;

  constructor(field: string, reason: string) {
    super(`invalid config "${field}": ${reason}`, 'GRID_CONFIG', false);
    this.name = 'GridConfigError';
    this.field = field;
    this.reason = reason;
    mark(this, BRANDS.GridConfigError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridConfigError);
  }
}

/** An error answered by a node (an ErrorPayload); `code` is the protocol's string name. */
export class GridServerError extends GridError {
  /** Numeric wire code from the protocol's ErrorCode table. */
  readonly wireCode: number;
  readonly partition: number | undefined;
  readonly nodeId: string | undefined;

  constructor(wireCode: number, message: string, options?: GridErrorOptions & { partition?: number; nodeId?: string }) {
    const info = errorCodeInfo(wireCode);
    super(message, info.name, info.retryable, options);
    this.name = 'GridServerError';
    this.wireCode = wireCode;
    this.partition = options?.partition;
    this.nodeId = options?.nodeId;
    mark(this, BRANDS.GridServerError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridServerError);
  }
}

/** No owner of the key's partition is alive; the operation fails rather than return wrong data. */
export class PartitionLostError extends GridServerError {
  constructor(message: string, options?: GridErrorOptions & { partition?: number; nodeId?: string }) {
    super(ErrorCode.PARTITION_LOST, message, options);
    this.name = 'PartitionLostError';
    mark(this, BRANDS.PartitionLostError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.PartitionLostError);
  }
}

/** The lock is not held with this fencing token (expired, released, or taken by someone else). */
export class LockNotHeldError extends GridServerError {
  constructor(message: string, options?: GridErrorOptions & { partition?: number; nodeId?: string }) {
    super(ErrorCode.LOCK_NOT_HELD, message, options);
    this.name = 'LockNotHeldError';
    mark(this, BRANDS.LockNotHeldError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.LockNotHeldError);
  }
}

/** `lock.acquire()` did not get the lock within its wait bound. */
export class LockTimeoutError extends GridTimeoutError {
  /**
   * Remaining lease of the holder when the lock was last refused (ms), when the node said:
   * waiting that long may be enough. Undefined when unknown.
   */
  readonly heldForMs: number | undefined;

  constructor(message: string, options: { heldForMs?: number | undefined } = {}) {
    super(message, { code: 'GRID_LOCK_TIMEOUT' });
    this.name = 'LockTimeoutError';
    this.heldForMs = options.heldForMs;
    mark(this, BRANDS.LockTimeoutError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.LockTimeoutError);
  }
}

/** The client was closed; no further operations are accepted. */
export class GridClosedError extends GridError {
  constructor(message = 'the client is closed') {
    super(message, 'GRID_CLOSED', false);
    this.name = 'GridClosedError';
    mark(this, BRANDS.GridClosedError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridClosedError);
  }
}

/** The caller's AbortSignal fired. `cause` holds the signal's reason. */
export class GridAbortError extends GridError {
  constructor(message = 'the operation was aborted', options?: GridErrorOptions) {
    super(message, 'GRID_ABORTED', false, options);
    this.name = 'GridAbortError';
    mark(this, BRANDS.GridAbortError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridAbortError);
  }
}

/** A node answered the handshake as a member of another cluster; the connection was refused. */
export class ClusterMismatchError extends GridError {
  constructor(message: string) {
    super(message, 'GRID_CLUSTER_MISMATCH', false);
    this.name = 'ClusterMismatchError';
    mark(this, BRANDS.ClusterMismatchError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.ClusterMismatchError);
  }
}

/** A value could not be (de)serialised. */
export class GridSerializationError extends GridError {
  constructor(message: string, options?: GridErrorOptions) {
    super(message, 'GRID_SERIALIZATION', false, options);
    this.name = 'GridSerializationError';
    mark(this, BRANDS.GridSerializationError);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, BRANDS.GridSerializationError);
  }
}

/** Maps a node's ErrorPayload to the matching error class. */
export function serverError(
  payload: { code: number; message: string; partition?: number },
  nodeId?: string,
): GridServerError {
  const opts: { partition?: number; nodeId?: string } = {};
  if (payload.partition !== undefined) opts.partition = payload.partition;
  if (nodeId !== undefined) opts.nodeId = nodeId;
  switch (payload.code) {
    case ErrorCode.PARTITION_LOST:
      return new PartitionLostError(payload.message, opts);
    case ErrorCode.LOCK_NOT_HELD:
      return new LockNotHeldError(payload.message, opts);
    default:
      return new GridServerError(payload.code, payload.message, opts);
  }
}

/** True for errors worth retrying on another attempt (possibly on another node). */
export function isRetryable(err: unknown): boolean {
  return err instanceof GridError && err.retryable;
}
