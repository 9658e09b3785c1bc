/**
 * Real nats-server processes for tests and benches: one server or a JetStream cluster of three,
 * each with its own store directory and ports on 127.0.0.1. Ports are fixed per server at creation
 * so that a restarted server comes back where clients and routes expect it.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exited, freePort, makeTempDir, removeTempDir, spawnError, spawnTracked, waitFor } from './processes.js';

export interface NatsServerOptions {
  /** nats-server binary. Default: `NATS_SERVER` env variable, else `nats-server` on PATH. */
  binary?: string;
  /**
   * Servers of a cluster tell their clients the others' addresses (NATS's gossip, on by
   * default). False (`no_advertise`) keeps clients to the URLs they were given: a
   * ProcessCluster's nodes reach NATS only through their fault proxies, so that
   * `isolateFromControlPlane` cannot be escaped by dialling a gossiped address. Default true.
   */
  advertise?: boolean;
}

interface ServerSpec {
  name: string;
  port: number;
  clusterPort: number | undefined;
  routes: number[];
  dir: string;
  advertise: boolean;
}

/** One nats-server process (started, killed, hung, resumed and restarted by pid). */
export class NatsServer {
  private child: ChildProcess | undefined;
  private stderr = '';

  constructor(
    private readonly spec: ServerSpec,
    private readonly binary: string,
  ) {}

  get name(): string {
    return this.spec.name;
  }
  get port(): number {
    return this.spec.port;
  }
  get url(): string {
    return `nats://127.0.0.1:${this.spec.port}`;
  }
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }
  /** What the server wrote to stderr since its last start (for diagnostics). */
  get log(): string {
    return this.stderr;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const conf = join(this.spec.dir, 'nats.conf');
    const lines = [
      `server_name: ${this.spec.name}`,
      `listen: 127.0.0.1:${this.spec.port}`,
      `jetstream { store_dir: "${join(this.spec.dir, 'js')}" }`,
    ];
    if (this.spec.clusterPort !== undefined) {
      const routes = this.spec.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
      const gossip = this.spec.advertise ? '' : ', no_advertise: true';
      lines.push(`cluster { name: gridlink-test, listen: 127.0.0.1:${this.spec.clusterPort}, routes: [${routes}]${gossip} }`);
    }
    writeFileSync(conf, lines.join('\n') + '\n');
    this.stderr = '';
    const child = spawnTracked(this.binary, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let ready = false;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      if (this.stderr.length < 200_000) this.stderr += d;
      if (d.includes('Server is ready')) ready = true;
    });
    let gone = false;
    try {
      await waitFor(`nats-server ${this.spec.name} to be ready`, () => {
        if (!this.running) {
          gone = true;
          const cause = spawnError(child);
          if (cause) throw new Error(`nats-server ${this.spec.name} could not be started: ${cause.message} (set NATS_SERVER or the binary option to its path)`);
          // Its fatal line first (the banner before it says nothing about why).
          const fatal = this.stderr.split('\n').filter((l) => /\[(FTL|ERR)\]/.test(l)).join('\n');
          throw new Error(`nats-server ${this.spec.name} exited: ${fatal === '' ? this.stderr.slice(-2000) : `${fatal}\n--- its stderr:\n${this.stderr.slice(-2000)}`}`);
        }
        return ready;
      });
    } catch (err) {
      if (gone) throw err;
      // Timed out: the half-started server is ended (a start that failed leaves nothing running).
      child.kill('SIGKILL');
      await exited(child);
      throw new Error(`${(err as Error).message}; its stderr: ${this.stderr.slice(-2000)}`);
    }
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }
  /** SIGTERM (graceful shutdown), and wait until the process is gone. */
  async stop(): Promise<void> {
    if (this.child && this.running) {
      const c = this.child;
      process.kill(c.pid!, 'SIGCONT');
      process.kill(c.pid!, 'SIGTERM');
      await exited(c);
    }
  }
  /** SIGSTOP: the process keeps its sockets open but answers nothing. */
  hang(): void {
    if (this.child?.pid !== undefined && this.running) process.kill(this.child.pid, 'SIGSTOP');
  }
  /** SIGCONT after `hang()`. */
  resume(): void {
    if (this.child?.pid !== undefined && this.running) process.kill(this.child.pid, 'SIGCONT');
  }
  /** Starts again with the same name, ports and store (JetStream state survives a restart). */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    if (this.child && this.running) {
      const c = this.child;
      process.kill(c.pid!, sig);
      await exited(c);
    }
  }
}

/** A set of nats-server processes: `startNats({ servers: 1 | 3 })`. */
export class NatsCluster {
  private constructor(
    readonly servers: NatsServer[],
    private readonly dir: string,
  ) {}

  /** Starts `servers` (1 or 3) JetStream-enabled servers; with 3 they form a cluster over loopback routes. */
  static async start(options: NatsServerOptions & { servers?: 1 | 3 } = {}): Promise<NatsCluster> {
    const n = options.servers ?? 1;
    const binary = options.binary ?? process.env['NATS_SERVER'] ?? 'nats-server';
    const dir = makeTempDir('gridlink-nats-');
    const ports: number[] = [];
    const clusterPorts: number[] = [];
    for (let i = 0; i < n; i++) {
      ports.push(await freePort());
      if (n > 1) clusterPorts.push(await freePort());
    }
    const servers: NatsServer[] = [];
    for (let i = 0; i < n; i++) {
      const sdir = join(dir, `n${i + 1}`);
      mkdirSync(sdir);
      servers.push(
        new NatsServer(
          { name: `n${i + 1}`, port: ports[i]!, clusterPort: n > 1 ? clusterPorts[i] : undefined, routes: n > 1 ? clusterPorts.filter((_, j) => j !== i) : [], dir: sdir, advertise: options.advertise ?? true },
          binary,
        ),
      );
    }
    const cluster = new NatsCluster(servers, dir);
    try {
      await Promise.all(servers.map((s) => s.start()));
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /** Client URLs of every server. */
  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  /** Kills every server and removes the store directories. */
  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.kill()));
    removeTempDir(this.dir);
  }
}
