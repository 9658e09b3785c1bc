/**
 * The `gridlink-node` process and its runtime flags (ADR 0046): started without NODE_V8_FLAGS it
 * says, in one log line, how to start it; started with them (as the container image and
 * ProcessCluster start it) it does not. Real processes of the built CLI, on a memory control
 * plane (a cluster of one), each ended by pid.
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { NODE_V8_FLAGS } from '@gridlink/node';
import { exited, spawnTracked, waitFor } from '../src/processes.js';
import type { ChildProcess } from 'node:child_process';

const CLI = fileURLToPath(new URL('../../node/dist/cli.js', import.meta.url));
const started: ChildProcess[] = [];

afterEach(async () => {
  for (const c of started.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await exited(c);
  }
});

/** Starts the CLI with `flags` before its path; resolves once it serves, with its log so far, then stops it (SIGTERM) and checks it exits 0. */
async function logOfStart(flags: readonly string[]): Promise<string> {
  // Without NODE_OPTIONS of this process (a test runner may set one).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('GRIDLINK_')));
  const child = spawnTracked(process.execPath, [...flags, CLI, '--id', 'solo', '--port', '0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  started.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await waitFor('gridlink-node to listen', () => {
    if (child.exitCode !== null) throw new Error(`gridlink-node exited ${child.exitCode}: ${err}`);
    return out.includes(' listening on ');
  });
  // The line comes right after the listening line; the SIGTERM's "stopping" line comes after it.
  child.kill('SIGTERM');
  await exited(child);
  expect(child.exitCode).toBe(0);
  return err;
}

describe('gridlink-node runtime flags (ADR 0046)', () => {
  it('without NODE_V8_FLAGS the node logs how to start it, and serves anyway', async () => {
    const log = await logOfStart([]);
    const line = log.split('\n').find((l) => l.includes('young generation'));
    expect(line).toBeDefined();
    expect((JSON.parse(line!) as { flags: string }).flags).toBe(NODE_V8_FLAGS.join(' '));
  });

  it('with NODE_V8_FLAGS it does not', async () => {
    const log = await logOfStart(NODE_V8_FLAGS);
    expect(log).toContain('stopping');
    expect(log).not.toContain('young generation');
  });
});
