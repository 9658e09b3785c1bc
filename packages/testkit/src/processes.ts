/**
 * Bookkeeping for child processes and temp dirs the test kit starts: each is ended by its pid and
 * each dir removed when the owner stops it, and, as a last resort, when this process exits (also
 * after a failed or timed-out test, since vitest's fork exits then) or is killed outright (SIGKILL,
 * as vitest ends a fork whose event loop is stuck, or the OOM killer): then a small reaper process
 * does it, which learns every pid and dir from this process over a pipe and acts when the pipe
 * closes.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
const spawnErrors = new WeakMap<ChildProcess, Error>();
let hooked = false;

/**
 * The reaper's program: lines on stdin add (`+p <pid>`, `+d <dir>`) and drop (`-p`, `-d`) what it
 * ends; when stdin closes — this process exited, however it ended — it SIGKILLs every pid still
 * listed and removes every dir, then exits.
 */
const REAPER = `
const { rmSync } = require('node:fs');
const pids = new Set();
const dirs = new Set();
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    const set = line[1] === 'p' ? pids : dirs;
    const v = line.slice(3);
    if (line[0] === '+') set.add(v); else set.delete(v);
  }
});
process.stdin.on('close', () => {
  for (const p of pids) { try { process.kill(Number(p), 'SIGKILL'); } catch {} }
  for (const d of dirs) { try { rmSync(d, { recursive: true, force: true }); } catch {} }
  process.exit(0);
});
`;

let reaper: ChildProcess | null | undefined;

/** Tells the reaper (started on first use; none where it cannot start) to add or drop an entry. */
function toReaper(line: string): void {
  if (reaper === undefined) {
    try {
      // Its own process group, so a Ctrl-C meant for the tests does not end it before it acts; no
      // stdout/stderr, so it holds no pipe of a test runner open; no NODE_OPTIONS (a loader or a
      // default module type of the tests' is not the reaper's). Unreferenced: this process exits
      // as if it were not there.
      const env = { ...process.env };
      delete env['NODE_OPTIONS'];
      reaper = spawn(process.execPath, ['-e', REAPER], { stdio: ['pipe', 'ignore', 'ignore'], detached: true, env });
      reaper.on('error', () => (reaper = null));
      reaper.stdin!.on('error', () => undefined);
      reaper.unref();
      (reaper.stdin as unknown as { unref?: () => void }).unref?.();
    } catch {
      reaper = null;
    }
  }
  if (reaper !== null && reaper.stdin?.writable === true) reaper.stdin.write(line + '\n');
}

function cleanupSync(): void {
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanupSync();
      process.kill(process.pid, sig);
    });
  }
}

/** Spawns a child that is SIGKILLed by pid when this process exits, unless it ended before. */
export function spawnTracked(command: string, args: string[], options: SpawnOptions): ChildProcess {
  hook();
  const child = spawn(command, args, options);
  children.add(child);
  const pid = child.pid;
  if (pid !== undefined) toReaper(`+p ${pid}`);
  child.once('exit', () => {
    children.delete(child);
    if (pid !== undefined) toReaper(`-p ${pid}`);
  });
  child.once('error', (err) => {
    children.delete(child);
    spawnErrors.set(child, err);
  });
  return child;
}

/** Why `child` (from spawnTracked) could not be started, if it could not (e.g. ENOENT). */
export function spawnError(child: ChildProcess): Error | undefined {
  return spawnErrors.get(child);
}

/** A fresh temp dir removed when this process exits (or earlier by `removeTempDir`). */
export function makeTempDir(prefix: string): string {
  hook();
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  toReaper(`+d ${d}`);
  return d;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  if (dirs.delete(dir)) toReaper(`-d ${dir}`);
}

/** Pids of live children started through this module (for leak checks in tests). */
export function trackedPids(): number[] {
  return [...children].flatMap((c) => (c.pid !== undefined && c.exitCode === null && c.signalCode === null ? [c.pid] : []));
}

/** Temp dirs created through this module and not removed yet (for leak checks in tests). */
export function trackedTempDirs(): string[] {
  return [...dirs];
}

/**
 * A currently free TCP port on 127.0.0.1 for a server a test starts (and may restart on the same
 * port). It is taken below the kernel's ephemeral range (ip_local_port_range), which outgoing
 * connections draw their source ports from: a port given back by a killed node or NATS server
 * cannot then be taken by some client's connection before the restart binds it again. Ports are
 * not handed out twice by one process; a port another process holds is skipped by the bind check.
 * Where the range cannot be read, the OS picks an ephemeral port (with that small reuse race).
 */
export function freePort(): Promise<number> {
  return freePortOn('127.0.0.1');
}
/** Resolves when the child exits (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** Polls `cond` every `everyMs` until it holds or `timeoutMs` passes (then rejects naming `what`). */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether something on 127.0.0.1 accepts a TCP connection on `port` right now. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Polls until something accepts connections on `port` (a started server has no other way to
 * announce itself), or rejects after `timeoutMs` — at once when `child` exits first.
 */
export async function waitForPort(port: number, options: { timeoutMs?: number; child?: ChildProcess } = {}): Promise<void> {
  const { timeoutMs = 10_000, child } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before opening port ${port}`);
    }
    if (await portOpen(port)) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Whether addresses of 127/8 other than 127.0.0.1 can be bound (Linux routes all of 127/8 to
 * loopback; macOS and others only 127.0.0.1 unless aliases are configured). Partitionable
 * clusters and per-source fault tests need it.
 */
export function loopbackAliasesUsable(): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '127.0.1.1', () => s.close(() => resolve(true)));
  });
}

/** A currently free TCP port on `host`, chosen as freePort() chooses (see there). */
export async function freePortOn(host: string): Promise<number> {
  const range = stableRange();
  if (range !== null) {
    for (let attempt = 0; attempt < 64; attempt++) {
      const port = range.lo + Math.floor(Math.random() * (range.hi - range.lo + 1));
      if (handedOut.has(port)) continue;
      if (await bindable(host, port)) {
        handedOut.add(port);
        return port;
      }
    }
  }
  return osPickedPort(host);
}

const handedOut = new Set<number>();
let cachedRange: { lo: number; hi: number } | null | undefined;

/**
 * Ports for test servers: the 10,000 below the ephemeral range (at least 1024), or null when
 * /proc/sys/net/ipv4/ip_local_port_range is unreadable or leaves no room.
 */
export function stableRange(): { lo: number; hi: number } | null {
  if (cachedRange !== undefined) return cachedRange;
  cachedRange = null;
  try {
    const [first] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (first !== undefined && Number.isInteger(first) && first - 1 >= 2048) cachedRange = { lo: Math.max(1024, first - 10_000), hi: first - 1 };
  } catch {
    // not Linux: the OS picks
  }
  return cachedRange;
}

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function osPickedPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}
