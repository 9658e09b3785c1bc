export { Deduper, Ticket } from './deduper.js';
export type { DedupeRequest, DirectResponse, CapturedResponse, Decision, Outcome, RequestInfo, DedupeEvents } from './deduper.js';
export { resolveDedupeOptions, DEFAULT_REPLAY_HEADERS } from './config.js';
export type { DedupeOptions, ResolvedDedupeOptions, DedupeLogger, FailMode, MetricsOption, PromClientLike, RegistryLike } from './config.js';
export { CircuitBreaker, DEFAULT_BREAKER } from './breaker.js';
export type { BreakerOptions, BreakerState } from './breaker.js';
export { canonicalJson, checkHeaderKey, scopedKeyHash, payloadHash, sha256 } from './key.js';
export type { Scope } from './key.js';
export { DedupeError, DedupeConfigError } from './errors.js';
