import { ErrorCode, errorCodeInfo } from '@gridlink/protocol';

const STORE_ERROR_BRAND = Symbol.for('gridlink.StoreError');

/** Why the store refused an operation (finer than the wire code, for logs and tests). */
export type StoreErrorReason =
  | 'bad-request'
  | 'unknown-op'
  | 'value-type'
  | 'overflow'
  | 'seq-reused'
  /** A seq below the session's acknowledged floor: a stale duplicate of a settled request. */
  | 'seq-acknowledged'
  | 'bad-record'
  | 'bad-snapshot';

/**
 * Error thrown by the storage engine. `wireCode` is the protocol ErrorCode the server puts in the
 * ErrorPayload; `code` is its stable string name. A StoreError is always thrown BEFORE any state
 * changed, so the operation can be reported as failed without anything to replicate.
 */
export class StoreError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly wireCode: ErrorCode;
  readonly reason: StoreErrorReason;

  constructor(wireCode: ErrorCode, reason: StoreErrorReason, message: string) {
    super(message);
    this.name = 'StoreError';
    this.wireCode = wireCode;
    this.reason = reason;
    const info = errorCodeInfo(wireCode);
    this.code = info.name;
    this.retryable = info.retryable;
    Object.defineProperty(this, STORE_ERROR_BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && STORE_ERROR_BRAND in value;
  }
}

export function badRequest(message: string): StoreError {
  return new StoreError(ErrorCode.BAD_REQUEST, 'bad-request', message);
}
