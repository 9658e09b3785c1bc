/**
 * Which local address this node's outbound peer connections bind to. A node listening on one
 * specific address of a multi-homed host (`--host 10.0.0.5`) also dials its peers from that
 * address, so peers, firewalls and fault proxies see one address per node in both directions.
 * Pure, so the rule is tested on its own.
 */
import net from 'node:net';

function isLoopback(ip: string): boolean {
  return net.isIPv4(ip) ? ip.startsWith('127.') : ip === '::1';
}

function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::' || ip === '[::]';
}

/**
 * The address to bind a connection to `target` to, or undefined to let the OS choose. Binds only
 * when the listen address is a specific IP literal and the target an IP literal of the same
 * family, and never a loopback address towards a non-loopback target (it could not be routed).
 */
export function peerLocalAddress(listenHost: string, target: string): string | undefined {
  const host = listenHost.replace(/^\[|\]$/g, '');
  const dest = target.replace(/^\[|\]$/g, '');
  const family = net.isIP(host);
  if (family === 0 || isWildcard(host)) return undefined;
  if (net.isIP(dest) !== family) return undefined;
  if (isLoopback(host) && !isLoopback(dest)) return undefined;
  return host;
}
