/**
 * Real processes for the messaging tests: a nats-server on a free 127.0.0.1 port with its own
 * JetStream store dir, and worker child processes. Everything started here is remembered and
 * killed by pid (also from a process 'exit' handler if a test dies), temp dirs removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { freePort, waitForPort } from '@gridlink/testkit';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const started = new Set<ChildProcess>();
const dirs = new Set<string>();
process.on('exit', () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) process.kill(p.pid, 'SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export { freePort };

export function track(p: ChildProcess): void {
  started.add(p);
  p.once('exit', () => started.delete(p));
}

/** Kills by pid with the signal and waits for the exit. */
export async function killProcess(p: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return;
  const exited = once(p, 'exit');
  process.kill(p.pid, signal);
  await exited;
}

export const NATS_SERVER = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';

export class NatsServer {
  private proc: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    readonly storeDir: string,
    /** The server's HTTP monitoring port (/connz). */
    readonly monitorPort: number,
    /** The server's max_payload (bytes); undefined: nats-server's default (1 MiB). */
    readonly maxPayload: number | undefined,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** `maxPayload`: the server's max_payload (a configuration file; nats-server has no flag for it). */
  static async start(options: { maxPayload?: number } = {}): Promise<NatsServer> {
    const dir = mkdtempSync(join(tmpdir(), 'gridlink-msg-nats-'));
    dirs.add(dir);
    const s = new NatsServer(await freePort(), dir, await freePort(), options.maxPayload);
    await s.launch();
    return s;
  }

  private async launch(): Promise<void> {
    const args = ['-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort), '-js', '-sd', this.storeDir];
    if (this.maxPayload !== undefined) {
      const conf = join(this.storeDir, 'nats.conf');
      writeFileSync(conf, `max_payload: ${this.maxPayload}\n`);
      args.unshift('-c', conf);
    }
    const p = spawn(NATS_SERVER, args, { stdio: 'ignore' });
    track(p);
    this.proc = p;
    await waitForPort(this.port, { timeoutMs: 10_000, child: p });
    await waitForPort(this.monitorPort, { timeoutMs: 10_000, child: p });
  }

  /**
   * The subjects the server holds subscriptions on for the client connection named `name` (the
   * `name` connect option), as its /connz monitoring endpoint reports them; null when no such
   * connection is open.
   */
  async subscriptionsOf(name: string): Promise<string[] | null> {
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/connz?subs=1&limit=1024`);
    const body = (await res.json()) as { connections?: { name?: string; subscriptions_list?: string[] }[] };
    const c = (body.connections ?? []).find((x) => x.name === name);
    return c === undefined ? null : [...(c.subscriptions_list ?? [])].sort();
  }

  /** SIGKILL, then start again on the same port and store. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  async kill(): Promise<void> {
    if (this.proc) await killProcess(this.proc);
    this.proc = null;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.storeDir, { recursive: true, force: true });
    dirs.delete(this.storeDir);
  }
}

/** A child process running a TypeScript file through tsx; its stdout is JSON lines. */
export class Child {
  readonly lines: unknown[] = [];
  private readonly listeners = new Set<(line: unknown) => void>();
  readonly exited: Promise<void>;

  constructor(
    readonly proc: ChildProcess,
    readonly name: string,
  ) {
    track(proc);
    this.exited = once(proc, 'exit').then(() => undefined);
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (l) => {
      let v: unknown;
      try {
        v = JSON.parse(l);
      } catch {
        return;
      }
      this.lines.push(v);
      for (const f of this.listeners) f(v);
    });
  }

  static spawn(file: string, env: Record<string, string>, name: string, cwd: string): Child {
    const proc = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return new Child(proc, name);
  }

  onLine(f: (line: unknown) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /** Resolves with the first line (already seen or future) matching pred; rejects after timeoutMs. */
  waitFor<T>(pred: (line: unknown) => line is T, timeoutMs = 15_000): Promise<T> {
    const seen = this.lines.find(pred);
    if (seen !== undefined) return Promise.resolve(seen as T);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`${this.name}: no matching line within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onLine((l) => {
        if (pred(l)) {
          clearTimeout(timer);
          off();
          resolve(l);
        }
      });
      void this.exited.then(() => {
        clearTimeout(timer);
        off();
        reject(new Error(`${this.name} exited`));
      });
    });
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return killProcess(this.proc, signal);
  }
}

/** Polls `cond` until true or the deadline passes. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
