/** Keys of the control plane the nodes share. */
export const TOPOLOGY_KEY = 'topology';
export const LEASE_PREFIX = 'lease.';
export const CACHE_PREFIX = 'cache.';

/**
 * A control plane bucket name: 1-64 characters of [A-Za-z0-9_-], what a JetStream KV bucket may be
 * called. The node (NatsControlPlane, the gridlink-node flags) and the admin CLI check it alike.
 */
export function isBucketName(name: unknown): boolean {
  return typeof name === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(name);
}
