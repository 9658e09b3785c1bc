import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, backups: 1, partitions: 32 });
});
afterAll(async () => {
  await cluster?.stop();
});

it('after close() nothing keeps the process alive: the child exits on its own', async () => {
  const script = fileURLToPath(new URL('./fixtures/close-child.ts', import.meta.url));
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, cluster.endpoints.join(',')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const DEADLINE = 30_000; // generous: includes TypeScript loading on a busy machine
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('did not exit on its own');
    }, DEADLINE);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c ?? -1);
    });
  });
  expect(code, `stdout: ${out}\nstderr: ${err}`).toBe(0);
  expect(out).toMatch(/token \d+/);
  expect(out).toContain('inflight 1');
  expect(out).toContain('closed');
});
