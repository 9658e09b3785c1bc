/**
 * `@gridlink/client/internal`: the client's pure building blocks, exported for its own tests,
 * benchmarks and tools. Not part of the public API: names and signatures here may change in any
 * release without notice. Applications use the main entry (`@gridlink/client`).
 */
export { backoffDelay } from './backoff.js';
export type { BackoffPolicy } from './backoff.js';
export { acceptMap, observeVersion, isStale, isValidMap, primaryOf, changedPrimaries, EMPTY_MAP_STATE } from './partition-table.js';
export type { MapState } from './partition-table.js';
export { route, splitByPrimary, RoundRobin } from './routing.js';
export type { Route, RouteReason } from './routing.js';
export { staggeredRace, RaceFailure } from './stagger.js';
export { LatencyHistogram } from './histogram.js';
export { SeqWindow } from './seq-window.js';
export { RenewalScheduler, stopRenewal } from './lock.js';
export { whyUndecodable } from './serializer.js';
export { describe } from './describe.js';
export { readStreamCreated } from './stream-info.js';
export { isCacheName } from './cache-name.js';
export { DeletedIds } from './deleted-ids.js';
