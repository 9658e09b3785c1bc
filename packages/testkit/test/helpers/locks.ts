/**
 * Lock hand-offs between two client processes (fixtures/lock-worker.mjs, on the built
 * @gridlink/client): each takes one lock in a loop, holds it briefly and releases it, reporting
 * every hold with its fencing token and wall-clock start and end (one clock: same machine).
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { exited, spawnTracked } from '../../src/processes.js';

export interface Hold {
  token: number;
  start: number;
  end: number;
  /** Which worker held it. */
  w: number;
}

export interface LockWorkers {
  readonly holds: Hold[];
  readonly errors: string[];
  /** Ends both workers (SIGTERM) and waits for them to exit. */
  stop(): Promise<void>;
}

const WORKER = fileURLToPath(new URL('../fixtures/lock-worker.mjs', import.meta.url));

/** Starts two worker processes handing lock `key` back and forth through `endpoints`. */
export function startLockWorkers(endpoints: string[], key: string): LockWorkers {
  const holds: Hold[] = [];
  const errors: string[] = [];
  const procs: ChildProcess[] = [0, 1].map((w) => {
    const child = spawnTracked(process.execPath, [WORKER, JSON.stringify(endpoints), key], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, i)) as { token?: number; start?: number; end?: number; error?: string };
        buf = buf.slice(i + 1);
        if (line.error !== undefined) errors.push(line.error);
        else if (line.token !== undefined) holds.push({ token: line.token, start: line.start!, end: line.end!, w });
      }
    });
    return child;
  });
  return {
    holds,
    errors,
    async stop() {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => exited(p)));
    },
  };
}

/** No worker saw an error, holders never overlapped, and fencing tokens only grew. */
export function expectExclusiveHolds(w: LockWorkers): void {
  expect(w.errors).toEqual([]);
  const byStart = [...w.holds].sort((a, b) => a.start - b.start);
  for (let i = 1; i < byStart.length; i++) {
    // The next holder starts only after the previous one ended, with a larger fencing token.
    expect(byStart[i]!.start).toBeGreaterThanOrEqual(byStart[i - 1]!.end);
    expect(byStart[i]!.token).toBeGreaterThan(byStart[i - 1]!.token);
  }
}
