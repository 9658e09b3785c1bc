import { ErrorCode, errorCodeInfo } from '@gridlink/protocol';

const CONFIG_ERROR_BRAND = Symbol.for('gridlink.NodeConfigError');
const GRID_NODE_ERROR_BRAND = Symbol.for('gridlink.GridNodeError');
const CAS_CONFLICT_BRAND = Symbol.for('gridlink.CasConflictError');

/** Invalid node or cluster configuration; the message names the field. */
export class NodeConfigError extends Error {
  readonly code = 'GRID_NODE_CONFIG';
  readonly retryable = false;
  readonly field: string;
  /** What is wrong with the field's value: the message without the `<field>: ` in front. */
  readonly reason: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'NodeConfigError';
    this.field = field;
    this.reason = message;
    Object.defineProperty(this, CONFIG_ERROR_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && CONFIG_ERROR_BRAND in value;
  }
}

/** An error the node answers a request with; carries the wire error code. */
export class GridNodeError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly wireCode: ErrorCode;
  readonly partition: number | undefined;
  constructor(wireCode: ErrorCode, message: string, partition?: number) {
    super(message);
    this.name = 'GridNodeError';
    this.wireCode = wireCode;
    const info = errorCodeInfo(wireCode);
    this.code = info.name;
    this.retryable = info.retryable;
    this.partition = partition;
    Object.defineProperty(this, GRID_NODE_ERROR_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && GRID_NODE_ERROR_BRAND in value;
  }
}

/** A compare-and-set on the control plane lost against a concurrent writer. */
export class CasConflictError extends Error {
  readonly code = 'GRID_CAS_CONFLICT';
  readonly retryable = true;
  constructor(key: string) {
    super(`revision conflict on ${key}`);
    this.name = 'CasConflictError';
    Object.defineProperty(this, CAS_CONFLICT_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && CAS_CONFLICT_BRAND in value;
  }
}
