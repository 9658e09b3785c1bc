import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it("an application's throwing event listeners neither stop the client's own work nor vanish: each is an uncaught exception", async () => {
  const script = fileURLToPath(new URL('./fixtures/throwing-listeners-child.ts', import.meta.url));
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('did not exit on its own');
    }, 40_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c ?? -1);
    });
  });
  expect(code, `stdout: ${out}\nstderr: ${err}`).toBe(0);
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  expect(r.get).toBe('resolved undefined');
  expect(r.connectedToB).toBe(true);
  expect(r.lost).toBe('LockNotHeldError');
  expect(r.signalAborted).toBe(true);
  expect(r.unhandled).toEqual([]);
  expect(r.uncaught).toEqual(
    ['connected', 'error', 'nodeUp', 'retry', 'topologyChanged'].map((e) => `listener of ${e} threw`),
  );
});
