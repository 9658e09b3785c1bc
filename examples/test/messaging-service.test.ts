/**
 * The messaging example as docs/messaging.md (*The example*) tells a user to run it: a nats-server
 * on 127.0.0.1, two workers (the first hosts the embedded grid), `messaging:submit`, one worker
 * killed with SIGKILL while it runs jobs. Real processes, each ended by pid; the temp dir removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';

const root = fileURLToPath(new URL('../..', import.meta.url));
const NATS_SERVER = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';

/** A port free now on 127.0.0.1 (and, with `span`, the `span - 1` after it). */
async function freePorts(span = 1): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const ports: number[] = [];
    const first = await listenOn(0);
    if (first === null) continue;
    ports.push(first);
    let ok = true;
    for (let i = 1; i < span && ok; i++) ok = (await listenOn(first + i)) !== null;
    if (ok) return first;
  }
  throw new Error('no free ports');
}

function listenOn(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

interface Proc {
  child: ChildProcess;
  out: () => string;
}

const procs: ChildProcess[] = [];
const dirs: string[] = [];

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return { child, out: () => out };
}

async function stop(p: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return p.exitCode;
  const exited = once(p, 'exit');
  process.kill(p.pid, signal);
  const [code] = (await exited) as [number | null];
  return code;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number, p?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${p ? `\n--- output\n${p.out()}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

afterAll(async () => {
  for (const p of procs.reverse()) await stop(p, 'SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('examples/messaging-service', () => {
  it('two workers and a submit run every transfer once; a worker SIGKILLed mid-run has its jobs taken over', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gridlink-msg-example-'));
    dirs.push(dir);
    const natsPort = await freePorts();
    const gridBase = await freePorts(3);
    const nats = start(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(natsPort), '-sd', dir], {});
    const env = { NATS_URL: `nats://127.0.0.1:${natsPort}`, GRID_BASE_PORT: String(gridBase), TSX_TSCONFIG_PATH: 'tsconfig.json' };
    await waitFor('nats-server', () => nats.out().includes('Server is ready'), 15_000, nats);
    const tsx = (file: string, ...args: string[]): Proc => start(process.execPath, ['--import', 'tsx', `examples/messaging-service/${file}`, ...args], env);

    const w1 = tsx('worker.ts');
    await waitFor('the first worker', () => /worker \S+ ready \(hosting the embedded grid/.test(w1.out()), 60_000, w1);
    const w2 = tsx('worker.ts');
    await waitFor('the second worker', () => /worker \S+ ready\n/.test(w2.out()), 60_000, w2);
    const w2Id = /worker (\S+) ready/.exec(w2.out())?.[1] ?? '';

    const count = 12;
    const submit = tsx('submit.ts', String(count));
    // SIGKILL the second worker once it runs a job (each takes 600 ms: it dies mid-run).
    await waitFor('the second worker to claim a job', () => w2.out().includes('claimed '), 60_000, w2);
    await stop(w2.child, 'SIGKILL');
    const [code] = (await once(submit.child, 'exit')) as [number | null];
    expect(code, submit.out()).toBe(0);
    for (let i = 0; i < count; i++) expect(submit.out()).toMatch(new RegExp(`^transfer-${i}: completed after \\d+ run\\(s\\), token \\d+$`, 'm'));
    // The first worker resumed what the second held, from its checkpoint where it had one.
    expect(w1.out()).toContain(`taking over from ${w2Id}`);
    expect((w1.out().match(/^completed /gm) ?? []).length + (w2.out().match(/^completed /gm) ?? []).length).toBeGreaterThanOrEqual(count);

    // Each ledger entry written once: a debit and a credit per transfer.
    const grid = await GridClient.connect({ endpoints: [0, 1, 2].map((i) => `127.0.0.1:${gridBase + i}`) });
    try {
      const ledger = grid.cache<string, number>('example.ledger');
      for (let i = 0; i < count; i++) {
        expect(await ledger.get(`transfer-${i}:debit:acct-${i}`)).toBe(-(10 + i));
        expect(await ledger.get(`transfer-${i}:credit:acct-${i + 1}`)).toBe(10 + i);
      }
    } finally {
      await grid.close();
    }

    // Submitting again transfers nothing: the same ids are the existing jobs.
    const again = tsx('submit.ts', String(count));
    const [code2] = (await once(again.child, 'exit')) as [number | null];
    expect(code2, again.out()).toBe(0);
    expect((again.out().match(/^transfer-\d+: already completed$/gm) ?? []).length).toBe(count);

    // A count that is no number of transfers is refused (it submitted nothing and exited 0).
    const bad = tsx('submit.ts', 'ten');
    const [code3] = (await once(bad.child, 'exit')) as [number | null];
    expect(code3).toBe(2);
    expect(bad.out()).toContain('usage: pnpm messaging:submit [count]');

    // Ctrl-C (SIGINT) stops the worker that hosts the grid cleanly.
    expect(await stop(w1.child, 'SIGINT')).toBe(0);
    await stop(nats.child, 'SIGTERM');
  }, 180_000);
});
