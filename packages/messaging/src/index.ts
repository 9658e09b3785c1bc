export { JobQueue, JobWorker } from './jobs.js';
export type {
  JobQueueOptions,
  SubmitOptions,
  SubmitResult,
  JobStatus,
  JobContext,
  JobHandler,
  RetryOptions,
  WorkerOptions,
  WorkerEvents,
} from './jobs.js';
export { IdempotentConsumer } from './idempotent.js';
export type { IdempotentOptions, IdempotentContext, IdempotentHandler, IdempotentEvents, Outcome, SubscribeOptions, DirectOptions } from './idempotent.js';
export { retryDelay, checkJobId, MAX_JOB_ID_LENGTH } from './record.js';
export type { JobState, BackoffPolicy } from './record.js';
export {
  MessagingError,
  MessagingConfigError,
  InvalidJobIdError,
  InvalidPayloadError,
  PayloadTooLargeError,
  JobNotFoundError,
  StaleOwnerError,
  OwnershipLostError,
  JobFailedError,
  JobTimeoutError,
  JobOutcomeNotRecordedError,
  ResultTimeoutError,
  MissingMessageIdError,
  MessagingClosedError,
} from './errors.js';
export type { JobErrorInfo } from './errors.js';
/** The NATS connect function and connection type this package is built on, re-exported for convenience. */
export { connect as connectNats } from '@nats-io/transport-node';
export type { NatsConnection } from '@nats-io/transport-node';
