/**
 * Error classes of the messaging adapter. Each has a stable `code` and a `retryable` flag and is
 * branded with a `Symbol.for` key so `instanceof` survives duplicate installs of the package.
 */
const BRAND = Symbol.for('gridlink.messaging.MessagingError');

/** Base class of every error this package throws. */
export class MessagingError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(message: string, code = 'MESSAGING_ERROR', retryable = false, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MessagingError';
    this.code = code;
    this.retryable = retryable;
    Object.defineProperty(this, BRAND, { value: true, enumerable: false });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    if ((value as Record<symbol, unknown>)[BRAND] !== true) return false;
    // Subclasses: compare the name chain so duplicate installs still match by class name.
    if (this === MessagingError) return true;
    let proto: unknown = Object.getPrototypeOf(value);
    while (proto !== null && proto !== undefined) {
      if ((proto as { constructor?: { name?: string } }).constructor?.name === this.name) return true;
      proto = Object.getPrototypeOf(proto);
    }
    return false;
  }
}

/** A configuration value is invalid; `field` names it. */
export class MessagingConfigError extends MessagingError {
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`invalid ${field}: ${reason}`, 'MESSAGING_CONFIG');
    this.name = 'MessagingConfigError';
  }
}

/** A job id is not a string of 1..128 characters from [A-Za-z0-9._:-]. */
export class InvalidJobIdError extends MessagingError {
  constructor(reason: string) {
    super(`invalid job id: ${reason}`, 'JOB_INVALID_ID');
    this.name = 'InvalidJobIdError';
  }
}

/** A payload, checkpoint or result cannot be encoded (functions, symbols, cycles...). */
export class InvalidPayloadError extends MessagingError {
  constructor(what: string, reason: string, options?: { cause?: unknown }) {
    super(`invalid ${what}: ${reason}`, 'JOB_INVALID_PAYLOAD', false, options);
    this.name = 'InvalidPayloadError';
  }
}

/** An encoded payload, checkpoint or result is larger than `maxPayloadBytes`. */
export class PayloadTooLargeError extends MessagingError {
  constructor(
    what: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`${what} is ${bytes} bytes encoded, more than the limit of ${limit}`, 'JOB_PAYLOAD_TOO_LARGE');
    this.name = 'PayloadTooLargeError';
  }
}

/** No job with this id exists. */
export class JobNotFoundError extends MessagingError {
  constructor(readonly jobId: string) {
    super(`no job ${jobId}`, 'JOB_NOT_FOUND');
    this.name = 'JobNotFoundError';
  }
}

/**
 * A write by an owner whose claim was superseded (its fencing token is older than the job's) or
 * for a job that is no longer running: refused.
 */
export class StaleOwnerError extends MessagingError {
  constructor(
    readonly jobId: string,
    readonly token: number,
    readonly currentToken: number,
  ) {
    super(`job ${jobId}: fencing token ${token} is stale (current ${currentToken})`, 'JOB_STALE_OWNER');
    this.name = 'StaleOwnerError';
  }
}

/** This worker no longer (certainly) owns the job: its lease was lost or could not be renewed in time. */
export class OwnershipLostError extends MessagingError {
  constructor(readonly jobId: string, reason: string) {
    super(`job ${jobId}: ownership lost (${reason})`, 'JOB_OWNERSHIP_LOST', true);
    this.name = 'OwnershipLostError';
  }
}

/**
 * The outcome of a finished run (`completed` or `failed`) could not be written to the grid (the
 * grid's error is the `cause`). `willRetry`: the worker keeps trying (fenced by `token`); false
 * when its close() gave up: the job stays running in the grid and is run again after takeover.
 */
export class JobOutcomeNotRecordedError extends MessagingError {
  constructor(
    readonly jobId: string,
    readonly token: number,
    readonly outcome: 'completed' | 'failed',
    readonly willRetry: boolean,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? options.cause.message : String(options?.cause);
    super(
      `job ${jobId}: its ${outcome === 'completed' ? 'completion' : 'failure'} (fencing token ${token}) could not be recorded (${why}); ${willRetry ? 'retrying' : 'given up: the job runs again after takeover'}`,
      'JOB_OUTCOME_NOT_RECORDED',
      true,
      options,
    );
    this.name = 'JobOutcomeNotRecordedError';
  }
}

/**
 * A run of a job's handler took longer than the job's `jobTimeoutMs`: the reason its `signal`
 * aborts with, and (as `{ name, message, code }`) the error stored for the run, which counts as a
 * failed attempt.
 */
export class JobTimeoutError extends MessagingError {
  constructor(
    readonly jobId: string,
    readonly timeoutMs: number,
  ) {
    super(`job ${jobId}: the handler timed out after ${timeoutMs} ms`, 'JOB_TIMEOUT', true);
    this.name = 'JobTimeoutError';
  }
}

/** `result()` of a job that ended as failed. */
export class JobFailedError extends MessagingError {
  constructor(
    readonly jobId: string,
    readonly error: JobErrorInfo,
  ) {
    super(`job ${jobId} failed: ${error.message}`, 'JOB_FAILED');
    this.name = 'JobFailedError';
  }
}

/** `result()` waited `waitMs` and the job had not finished. */
export class ResultTimeoutError extends MessagingError {
  constructor(readonly jobId: string, waitMs: number) {
    super(`job ${jobId} did not finish within ${waitMs} ms`, 'JOB_RESULT_TIMEOUT', true);
    this.name = 'ResultTimeoutError';
  }
}

/**
 * A message has no usable id: no `Nats-Msg-Id` header and no `idOf` result, or one that cannot be
 * an id (too long, not valid Unicode, not a string), `idOf` threw, or the message's headers cannot
 * be read. `reason` says which; `cause` is what was thrown, if anything. Also thrown by
 * `isProcessed(id)` for such an id, with `subject` ''.
 */
export class MissingMessageIdError extends MessagingError {
  readonly subject: string;
  readonly reason: string;
  constructor(subject: string, reason = 'no Nats-Msg-Id header and idOf returned nothing', options?: { cause?: unknown }) {
    super(subject === '' ? `not a usable message id: ${reason}` : `message on ${subject} has no usable id: ${reason}`, 'MSG_NO_ID', false, options);
    this.name = 'MissingMessageIdError';
    this.subject = subject;
    this.reason = reason;
  }
}

/** The queue or consumer was closed. */
export class MessagingClosedError extends MessagingError {
  constructor(what: string) {
    super(`${what} is closed`, 'MESSAGING_CLOSED');
    this.name = 'MessagingClosedError';
  }
}

/** A failed job's error as stored in the grid. */
export interface JobErrorInfo {
  name: string;
  message: string;
  code?: string;
}
