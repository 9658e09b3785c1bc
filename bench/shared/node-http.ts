/**
 * The HTTP endpoints of `gridlink-node` processes started with `--http-port 0` (an ephemeral port
 * each): the port is found from the process' listening sockets in /proc (Linux), since
 * `ProcessCluster` passes every node the same flags. Used to wait for `/health/safe` as a
 * rollout would.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { waitFor } from '@gridlink/testkit';

/** TCP ports the process `pid` listens on (from /proc/<pid>/fd and /proc/net/tcp{,6}). */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is "ADDR:PORT" in hex; st 0A is LISTEN; field 9 is the socket's inode.
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue;
      ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports];
}

/** The HTTP port of a node process: the listening port that is not its grid port. */
export async function httpPortOf(pid: number, gridPort: number, timeoutMs = 10_000): Promise<number> {
  let port: number | undefined;
  await waitFor(
    `the HTTP port of pid ${pid}`,
    () => {
      port = listeningPorts(pid).find((p) => p !== gridPort);
      return port !== undefined;
    },
    timeoutMs,
    50,
  );
  return port!;
}

/** Status code of GET http://127.0.0.1:<port><path>, or 0 when it cannot connect. */
export async function httpStatus(port: number, path: string): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}
