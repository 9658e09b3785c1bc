/** Keys of the control plane the nodes share. */
export const TOPOLOGY_KEY = 'topology';
export const LEASE_PREFIX = 'lease.';
export const CACHE_PREFIX = 'cache.';
