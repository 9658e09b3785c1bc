/**
 * `@gridlink/client`: what an application calls. Internals used by the client's own tests and
 * benchmarks (routing, partition-map merging, backoff, staggered connect, histograms) are behind
 * `@gridlink/client/internal`, which carries no compatibility promise.
 */
export { GridClient } from './client.js';
export type { GridClientEvents, TopologySnapshot, NodeStats, ClientStats, WithLockOptions } from './client.js';
export { GridCache } from './cache.js';
export type { CacheOptions, OpOptions, PutOptions, IncrementOptions, ScanOptions } from './cache.js';
export { GridLock, LockHandle, DEFAULT_LEASE_MS, DEFAULT_WAIT_MS } from './lock.js';
export type { LockOptions, AcquireOptions, LockAttempt, LockStateAttempt } from './lock.js';
export { resolveConfig, DEFAULTS } from './config.js';
export type { GridClientConfig, ResolvedConfig, RetryConfig, ReconnectConfig, AuthConfig, GridLogger } from './config.js';
export { staticAddressFinder, dnsAddressFinder } from './address-finder.js';
export type { AddressFinder, DnsAddressFinderOptions, DnsResolver } from './address-finder.js';
export { parseEndpoint, parseEndpoints, formatEndpoint, EndpointParseError, MAX_PORT_RANGE } from './endpoints.js';
export type { Endpoint } from './endpoints.js';
export { msgpackSerializer, bytesSerializer } from './serializer.js';
export type { Serializer } from './serializer.js';
export type { RetryEvent } from './invoker.js';
export {
  GridError,
  GridConnectionError,
  GridTlsError,
  GridTimeoutError,
  GridConfigError,
  GridServerError,
  PartitionLostError,
  LockNotHeldError,
  LockTimeoutError,
  GridClosedError,
  GridAbortError,
  ClusterMismatchError,
  GridSerializationError,
  serverError,
  isRetryable,
} from './errors.js';
export type { EndpointFailure } from './errors.js';
export { InvalidKeyError } from '@gridlink/affinity';
export type { GridKey } from '@gridlink/affinity';
