import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@gridlink/protocol';
import {
  GridAbortError,
  GridClosedError,
  GridConfigError,
  GridConnectionError,
  GridError,
  GridServerError,
  GridTimeoutError,
  LockNotHeldError,
  PartitionLostError,
  isRetryable,
  serverError,
} from '@gridlink/client';

describe('error classes', () => {
  it('carry stable codes and retryable flags', () => {
    expect(new GridConnectionError('x')).toMatchObject({ code: 'GRID_CONNECTION', retryable: true });
    expect(new GridTimeoutError('x')).toMatchObject({ code: 'GRID_TIMEOUT', retryable: false });
    expect(new GridConfigError('f', 'bad')).toMatchObject({ code: 'GRID_CONFIG', retryable: false, field: 'f' });
    expect(new GridClosedError()).toMatchObject({ code: 'GRID_CLOSED', retryable: false });
    expect(new GridAbortError()).toMatchObject({ code: 'GRID_ABORTED', retryable: false });
  });

  it('maps every wire error code to a GridServerError with the protocol name and retryability', () => {
    for (const code of Object.values(ErrorCode)) {
      const e = serverError({ code, message: 'm', partition: 3 }, 'n1');
      expect(e).toBeInstanceOf(GridServerError);
      expect(e).toBeInstanceOf(GridError);
      expect(e.wireCode).toBe(code);
      expect(e.partition).toBe(3);
      expect(e.nodeId).toBe('n1');
      expect(e.code).toMatch(/^GRID_/);
    }
    expect(serverError({ code: ErrorCode.PARTITION_LOST, message: 'm' })).toBeInstanceOf(PartitionLostError);
    expect(serverError({ code: ErrorCode.LOCK_NOT_HELD, message: 'm' })).toBeInstanceOf(LockNotHeldError);
    expect(isRetryable(serverError({ code: ErrorCode.NOT_PRIMARY, message: 'm' }))).toBe(true);
    expect(isRetryable(serverError({ code: ErrorCode.PARTITION_LOST, message: 'm' }))).toBe(false);
    expect(serverError({ code: 9999, message: 'm' }).code).toBe('GRID_UNKNOWN_ERROR');
  });

  it('instanceof works through the Symbol.for brand (duplicate installs)', () => {
    const foreign = Object.create(Error.prototype) as Record<symbol, unknown>;
    foreign[Symbol.for('gridlink.client.GridError')] = true;
    foreign[Symbol.for('gridlink.client.GridConnectionError')] = true;
    expect(foreign).toBeInstanceOf(GridError);
    expect(foreign).toBeInstanceOf(GridConnectionError);
    expect(foreign).not.toBeInstanceOf(GridTimeoutError);
    expect(new Error('plain')).not.toBeInstanceOf(GridError);
    expect(new PartitionLostError('x')).toBeInstanceOf(GridServerError);
    expect(new GridServerError(ErrorCode.INTERNAL, 'x')).not.toBeInstanceOf(PartitionLostError);
  });
});
