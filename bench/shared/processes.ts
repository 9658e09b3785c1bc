/**
 * Child processes the benchmarks measure against, so the system under test never shares an
 * event loop with the load generator: an echo server (the floor), a redis-server, and a
 * gridlink LocalCluster controlled over stdin.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { waitForPort } from '@gridlink/testkit';

const here = dirname(fileURLToPath(import.meta.url));

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  srv.close();
  await once(srv, 'close');
  return port;
}

export { waitForPort };

export interface Child {
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

export async function startRedis(): Promise<(Child & { port: number }) | null> {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const failed = await Promise.race([
    once(proc, 'error').then(() => true),
    waitForPort(port).then(() => false),
  ]).catch(() => true);
  if (failed) {
    proc.kill('SIGKILL');
    return null;
  }
  return { proc, port, stop: () => stopChild(proc) };
}

/** A length-prefixed echo server in its own process: answers every frame with the same bytes. */
export async function startEcho(): Promise<Child & { port: number }> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'echo-server.ts'), String(port)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitForPort(port);
  return { proc, port, stop: () => stopChild(proc) };
}

export interface ClusterChild extends Child {
  endpoints: string[];
  nodeIds: string[];
  /** Sends a command (kill/hang/resume/restart <id>) and waits for its acknowledgement. */
  command(cmd: string): Promise<string>;
}

/** A LocalCluster in its own process, driven by line commands on stdin. */
export async function startCluster(opts: { nodes?: number; backups?: number; partitions?: number } = {}): Promise<ClusterChild> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'cluster-process.ts'), JSON.stringify(opts)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const nextLine = (): Promise<string> => new Promise((resolve) => waiting.push(resolve));
  const ready = JSON.parse(await nextLine()) as { endpoints: string[]; nodeIds: string[] };
  return {
    proc,
    endpoints: ready.endpoints,
    nodeIds: ready.nodeIds,
    async command(cmd: string) {
      const reply = nextLine();
      proc.stdin.write(`${cmd}\n`);
      return reply;
    },
    async stop() {
      proc.stdin.end('stop\n');
      await stopChild(proc);
    },
  };
}
