/**
 * redis-server processes for the cluster benchmark: one standalone server, or a Redis Cluster of
 * N masters (optionally one replica each) on 127.0.0.1, each node with its own temp directory and
 * its own client and cluster-bus ports. Every process is ended by its pid on `close()`, and on
 * exit, Ctrl-C or SIGTERM of this process if the bench fails first; the directories are removed
 * the same way. Nothing is ever killed by name.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, makeTempDir, removeTempDir, waitFor, waitForPort } from '@gridlink/testkit';

const live = new Set<ChildProcess>();
let hooked = false;

function killAllSync(): void {
  for (const c of live) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  live.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAllSync();
      // End the way the signal asks (the other once-handlers of this emit have run by then).
      process.kill(process.pid, sig);
    });
  }
}

/** Whether redis-server and redis-cli are installed. */
export function redisAvailable(): boolean {
  const s = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  const c = spawnSync('redis-cli', ['--version'], { stdio: 'ignore' });
  return s.status === 0 && c.status === 0;
}

function exited(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((r) => c.once('exit', () => r()));
}

/** One redis-server process, killed (SIGKILL) by its pid. */
export class RedisProcess {
  private child: ChildProcess | undefined;

  constructor(
    readonly port: number,
    private readonly args: string[],
    private readonly dir: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    hook();
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'no', ...this.args], {
      stdio: 'ignore',
    });
    live.add(child);
    child.once('exit', () => live.delete(child));
    this.child = child;
    await waitForPort(this.port, { child, timeoutMs: 10_000 });
  }

  /** kill -9, and wait until the process is gone. */
  async kill(): Promise<void> {
    const c = this.child;
    if (c && this.running) {
      process.kill(c.pid!, 'SIGKILL');
      await exited(c);
    }
  }
}

export interface RedisStandalone {
  port: number;
  pid: number | undefined;
  close(): Promise<void>;
}

/** One redis-server (no persistence). */
export async function startRedisServer(): Promise<RedisStandalone> {
  const dir = makeTempDir('gridlink-redis-');
  const r = new RedisProcess(await freePort(), [], dir);
  try {
    await r.start();
  } catch (err) {
    removeTempDir(dir);
    throw err;
  }
  return {
    port: r.port,
    pid: r.pid,
    async close() {
      await r.kill();
      removeTempDir(dir);
    },
  };
}

export interface RedisClusterOptions {
  masters?: number;
  /** Replicas per master (0 or 1 here). Default 0. */
  replicas?: number;
  /** `cluster-node-timeout` in ms. Default: redis' own (15000). */
  nodeTimeoutMs?: number;
}

/** A Redis Cluster created with `redis-cli --cluster create`. */
export class RedisClusterProcesses {
  private constructor(
    readonly nodes: RedisProcess[],
    private readonly dir: string,
  ) {}

  static async start(options: RedisClusterOptions = {}): Promise<RedisClusterProcesses> {
    const masters = options.masters ?? 3;
    const replicas = options.replicas ?? 0;
    const dir = makeTempDir('gridlink-redis-cluster-');
    const nodes: RedisProcess[] = [];
    const cluster = new RedisClusterProcesses(nodes, dir);
    try {
      for (let i = 0; i < masters * (1 + replicas); i++) {
        const port = await freePort();
        const busPort = await freePort();
        const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPort)];
        if (options.nodeTimeoutMs !== undefined) args.push('--cluster-node-timeout', String(options.nodeTimeoutMs));
        const ndir = join(dir, `n${i + 1}`);
        mkdirSync(ndir);
        nodes.push(new RedisProcess(port, args, ndir));
      }
      await Promise.all(nodes.map((n) => n.start()));
      const create = spawnSync(
        'redis-cli',
        ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes'],
        { encoding: 'utf8', timeout: 60_000 },
      );
      if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout.slice(-1000)} ${create.stderr.slice(-1000)}`);
      await cluster.waitHealthy();
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /** Waits until every node reports cluster_state:ok and every replica's link to its master is up. */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const conns = this.nodes.filter((n) => n.running).map((n) => new Redis({ host: '127.0.0.1', port: n.port, lazyConnect: true, maxRetriesPerRequest: 1 }));
    try {
      await waitFor(
        'redis cluster healthy',
        async () => {
          for (const c of conns) {
            const info = String(await c.cluster('INFO').catch(() => ''));
            if (!info.includes('cluster_state:ok')) return false;
            const repl = String(await c.info('replication').catch(() => ''));
            if (repl.includes('role:slave') && !repl.includes('master_link_status:up')) return false;
          }
          return true;
        },
        timeoutMs,
        100,
      );
    } finally {
      for (const c of conns) c.disconnect();
    }
  }

  /** Client addresses of the masters (per `CLUSTER NODES`) with their slot ranges. */
  async masters(): Promise<{ port: number; slots: [number, number][] }[]> {
    const any = this.nodes.find((n) => n.running)!;
    const c = new Redis({ host: '127.0.0.1', port: any.port, maxRetriesPerRequest: 1 });
    try {
      const text = String(await c.cluster('NODES'));
      const out: { port: number; slots: [number, number][] }[] = [];
      for (const line of text.trim().split('\n')) {
        const f = line.split(' ');
        if (!f[2]?.includes('master') || f[2].includes('fail')) continue;
        const port = Number(f[1]!.split('@')[0]!.split(':')[1]);
        const slots = f.slice(8).filter((s) => /^\d/.test(s)).map((s): [number, number] => {
          const [a, b] = s.split('-').map(Number);
          return [a!, b ?? a!];
        });
        out.push({ port, slots });
      }
      return out;
    } finally {
      c.disconnect();
    }
  }

  /** The hash slot of each key (asked of a node: `CLUSTER KEYSLOT`). */
  async keySlots(keys: string[]): Promise<number[]> {
    const any = this.nodes.find((n) => n.running)!;
    const c = new Redis({ host: '127.0.0.1', port: any.port, maxRetriesPerRequest: 1 });
    try {
      return await Promise.all(keys.map(async (k) => Number(await c.cluster('KEYSLOT', k))));
    } finally {
      c.disconnect();
    }
  }

  node(port: number): RedisProcess {
    const n = this.nodes.find((x) => x.port === port);
    if (!n) throw new Error(`no redis node on port ${port}`);
    return n;
  }

  /** Kills every node by pid and removes the directories. Idempotent. */
  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.kill()));
    removeTempDir(this.dir);
  }
}
