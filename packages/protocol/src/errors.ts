/**
 * Error codes shared by client and node, with their retryable classification.
 *
 * On the wire an error is `ErrorPayload { code, message, partition? }` where `code` is the number
 * below. Each code has a stable string name (`GridErrorCode`) used by the exported error classes.
 * `retryable` says whether the same request may succeed if sent again (possibly to another node)
 * without the caller changing anything.
 */

export const ErrorCode = {
  INTERNAL: 1,
  BAD_REQUEST: 2,
  UNKNOWN_OP: 3,
  NOT_PRIMARY: 4,
  PARTITION_MOVING: 5,
  PARTITION_LOST: 6,
  NODE_STOPPING: 7,
  TIMEOUT: 8,
  LOCK_NOT_HELD: 9,
  AUTH_FAILED: 10,
  CLUSTER_MISMATCH: 11,
  VERSION_MISMATCH: 12,
  VALUE_TYPE: 13,
  FRAME_TOO_LARGE: 14,
  REPLICATION_FAILED: 15,
  NOT_READY: 16,
  HANDSHAKE_TIMEOUT: 17,
  OVERLOADED: 18,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ErrorCodeInfo {
  /** Stable string code, e.g. "GRID_NOT_PRIMARY". */
  name: string;
  retryable: boolean;
  description: string;
}

export const ERROR_CODES: Readonly<Record<ErrorCode, ErrorCodeInfo>> = {
  [ErrorCode.INTERNAL]: { name: 'GRID_INTERNAL', retryable: false, description: 'unexpected failure inside the node' },
  [ErrorCode.BAD_REQUEST]: { name: 'GRID_BAD_REQUEST', retryable: false, description: 'the request payload is malformed or out of range' },
  [ErrorCode.UNKNOWN_OP]: { name: 'GRID_UNKNOWN_OP', retryable: false, description: 'the node does not know this op code' },
  [ErrorCode.NOT_PRIMARY]: { name: 'GRID_NOT_PRIMARY', retryable: true, description: 'this node is not the primary of the partition and could not forward' },
  [ErrorCode.PARTITION_MOVING]: { name: 'GRID_PARTITION_MOVING', retryable: true, description: 'the partition is changing owner; retry shortly' },
  [ErrorCode.PARTITION_LOST]: { name: 'GRID_PARTITION_LOST', retryable: false, description: 'no owner of the partition is alive' },
  [ErrorCode.NODE_STOPPING]: { name: 'GRID_NODE_STOPPING', retryable: true, description: 'the node is shutting down' },
  [ErrorCode.TIMEOUT]: { name: 'GRID_TIMEOUT', retryable: true, description: 'the node timed out waiting for a peer' },
  [ErrorCode.LOCK_NOT_HELD]: { name: 'GRID_LOCK_NOT_HELD', retryable: false, description: 'the lock is not held with this token' },
  [ErrorCode.AUTH_FAILED]: { name: 'GRID_AUTH_FAILED', retryable: false, description: 'authentication failed' },
  [ErrorCode.CLUSTER_MISMATCH]: { name: 'GRID_CLUSTER_MISMATCH', retryable: false, description: 'the node belongs to another cluster' },
  [ErrorCode.VERSION_MISMATCH]: { name: 'GRID_VERSION_MISMATCH', retryable: false, description: 'no protocol version in common' },
  [ErrorCode.VALUE_TYPE]: { name: 'GRID_VALUE_TYPE', retryable: false, description: 'the stored value is not of the type the operation needs' },
  [ErrorCode.FRAME_TOO_LARGE]: { name: 'GRID_FRAME_TOO_LARGE', retryable: false, description: 'a frame exceeds the maximum frame size' },
  [ErrorCode.REPLICATION_FAILED]: { name: 'GRID_REPLICATION_FAILED', retryable: true, description: 'a backup did not acknowledge; the write was not acknowledged' },
  [ErrorCode.NOT_READY]: { name: 'GRID_NOT_READY', retryable: true, description: 'the node has not joined or caught up yet' },
  [ErrorCode.HANDSHAKE_TIMEOUT]: { name: 'GRID_HANDSHAKE_TIMEOUT', retryable: true, description: 'the handshake did not complete in time' },
  [ErrorCode.OVERLOADED]: { name: 'GRID_OVERLOADED', retryable: true, description: 'the node refuses work it cannot queue' },
};

export function errorCodeInfo(code: number): ErrorCodeInfo {
  return (
    (ERROR_CODES as Record<number, ErrorCodeInfo | undefined>)[code] ?? {
      name: 'GRID_UNKNOWN_ERROR',
      retryable: false,
      description: `unknown error code ${code}`,
    }
  );
}

export function isRetryableCode(code: number): boolean {
  return errorCodeInfo(code).retryable;
}

const PROTOCOL_ERROR_BRAND = Symbol.for('gridlink.ProtocolError');

/**
 * Thrown by the frame decoder and payload validators on malformed input. The connection that
 * produced it should be closed; nothing else is affected.
 */
export class ProtocolError extends Error {
  readonly code: string;
  readonly retryable = false;
  readonly wireCode: ErrorCode;

  constructor(message: string, wireCode: ErrorCode = ErrorCode.BAD_REQUEST) {
    super(message);
    this.name = 'ProtocolError';
    this.wireCode = wireCode;
    this.code = errorCodeInfo(wireCode).name;
    Object.defineProperty(this, PROTOCOL_ERROR_BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && PROTOCOL_ERROR_BRAND in value;
  }
}
