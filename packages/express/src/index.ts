export { dedupe, gridlink } from './express.js';
export type { ExpressDedupeOptions, DedupeMiddleware, GridlinkOptions, GridlinkHandle, IdempotencyContext } from './express.js';
export { Deduper, CircuitBreaker, DedupeError, DedupeConfigError } from '@gridlink/dedupe';
export type { DedupeOptions, DedupeEvents, BreakerOptions, FailMode } from '@gridlink/dedupe';
