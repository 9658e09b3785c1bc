/**
 * What keeps the process alive while the client is open: its sockets, and the timers bounding
 * what a caller awaits (an operation's deadline, an address resolution's timeout), but not its
 * background timers. An awaited operation left between attempts with no socket open (every node
 * gone, reconnect timers unref'd), or a connect() whose address finder never answers, must settle
 * at its deadline rather than the process exiting with the promise never settled.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { ScriptedNode } from '@gridlink/testkit';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Runs the child with `args`; resolves with its exit code and output once it exits on its own. */
function runChild(args: string[]): { exited: Promise<{ code: number | string; out: string; err: string }>; exitCode: () => number | null } {
  const script = fileURLToPath(new URL('./fixtures/pending-op-child.ts', import.meta.url));
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | string; out: string; err: string }>((resolve) => {
    // Generous: includes TypeScript loading on a busy machine.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ code: 'did not exit on its own', out, err });
    }, 30_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve({ code: c ?? -1, out, err });
    });
  });
  return { exited, exitCode: () => child.exitCode };
}

it('a connect() whose address finder never answers keeps the process alive until it rejects at connectTimeout', async () => {
  const { code, out, err } = await runChild(['finder']).exited;
  expect(code, `stdout: ${out}\nstderr: ${err}`).toBe(0);
  expect(out).toContain('settled: GridConnectionError');
});

it('an awaited put whose node went away keeps the process alive until it settles at its deadline', async () => {
  // Answers the map and heartbeats; never the put.
  const node = await new ScriptedNode('n1', 8, (req, n) => {
    if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
    if (req.op === Op.HEARTBEAT) return { payload: {} };
    return undefined;
  }).start();
  cleanups.push(() => node.close());
  const child = runChild(['put', node.endpoint]);
  await waitFor(() => node.count(Op.CACHE_PUT) > 0 || child.exitCode() !== null, 25_000, "the child's put");
  // The node goes away: the client's socket closes and the put is retried, with nowhere to go.
  await node.close();
  const { code, out, err } = await child.exited;
  expect(code, `stdout: ${out}\nstderr: ${err}`).toBe(0);
  expect(out).toContain('sent');
  expect(out).toContain('settled: GridTimeoutError');
});
