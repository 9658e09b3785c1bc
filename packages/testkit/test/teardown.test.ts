/**
 * The kit's promise: every process it starts is ended by pid and every temp dir removed — on
 * `close()`, when a start fails half-way, and when the process that started them goes away (a
 * vitest fork that fails, times out, is SIGTERMed, or is SIGKILLed because its event loop is
 * stuck). Real nats-server and `gridlink-node` processes on 127.0.0.1.
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { NatsCluster, ProcessCluster, trackedPids, trackedTempDirs, waitFor } from '@gridlink/testkit';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** Whether `pid` is a live process (a zombie nobody reaped yet counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return process.platform !== 'linux';
  }
}

async function holdPort(): Promise<Server> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return s;
}

afterEach(() => {
  expect(trackedPids()).toEqual([]);
  expect(trackedTempDirs()).toEqual([]);
});

describe('a start that fails half-way ends what it started', () => {
  it('a nats-server binary that cannot be run: the error names it and the reason, no dir is left', async () => {
    const err = await NatsCluster.start({ binary: '/nonexistent/nats-server' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/nats-server n1 could not be started: spawn \/nonexistent\/nats-server ENOENT/);
  });

  it('the second of three nats-servers cannot bind: the others are ended, the dir removed, the error says why', async () => {
    const busy = await holdPort();
    process.env['BUSY_PORT'] = String((busy.address() as AddressInfo).port);
    try {
      const err = await NatsCluster.start({ servers: 3, binary: fixture('nats-n2-port-taken.sh') }).catch((e: unknown) => e);
      // The reason comes first, not after nats-server's banner.
      expect((err as Error).message).toMatch(/^nats-server n2 exited: .*\[FTL\] Error listening on port: .*address already in use/);
    } finally {
      delete process.env['BUSY_PORT'];
      busy.close();
    }
  });

  it('a grid node that exits at start-up: the node already up and NATS are ended, the error carries its stderr', async () => {
    const err = await ProcessCluster.start({ nodes: 3, partitions: 8, cliPath: fixture('node-2-fails.mjs') }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/gridlink-node node-2 exited \(3\): node-2: refusing to start/);
  });

  it('a grid node that never listens: after startTimeoutMs everything is ended, the error carries its stderr', async () => {
    const t0 = Date.now();
    const err = await ProcessCluster.start({ nodes: 2, partitions: 8, cliPath: fixture('node-2-hangs.mjs'), startTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/timed out after 1500 ms waiting for gridlink-node node-2 to listen/);
    expect((err as Error).message).toMatch(/node-2: waiting for a control plane that never answers/);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});

describe('stopping what is stopped, hung or gone', () => {
  it('a node start() that times out ends the process it started, and the node starts again', async () => {
    const cluster = await ProcessCluster.start({ nodes: 1, partitions: 8 });
    try {
      const node = cluster.nodes[0]!;
      await node.kill();
      // No Node process prints its "listening" line within a millisecond.
      node.startTimeoutMs = 1;
      await expect(node.start()).rejects.toThrow(/timed out after 1 ms waiting for gridlink-node node-1 to listen/);
      const pid = node.pid!;
      expect(node.running).toBe(false);
      expect(alive(pid)).toBe(false);
      node.startTimeoutMs = 30_000;
      await node.start();
      await cluster.waitForMembers(['node-1']);
    } finally {
      await cluster.close();
    }
  });

  it('close() with a hung (SIGSTOPped) NATS server and a hung node is prompt', async () => {
    const cluster = await ProcessCluster.start({ nodes: 1, partitions: 8 });
    await cluster.topology(); // the cluster's own control-plane connection is open
    cluster.nats.servers[0]!.hang();
    cluster.nodes[0]!.hang();
    const t0 = Date.now();
    await cluster.close();
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('double stop, stop after kill, kill after stop, restart of a hung process: each ends by pid', async () => {
    const cluster = await ProcessCluster.start({ nodes: 1, partitions: 8 });
    try {
      const node = cluster.nodes[0]!;
      const nats = cluster.nats.servers[0]!;
      // A hung node restarts (SIGKILL works on a stopped process) under the same id.
      const hungPid = node.pid!;
      node.hang();
      await node.restart();
      expect(alive(hungPid)).toBe(false);
      expect(node.pid).not.toBe(hungPid);
      await cluster.waitForMembers(['node-1']);
      // A hung node is stopped gracefully: SIGCONT first, or SIGTERM would wait for ever.
      node.hang();
      expect(await node.terminate()).toBe(0);
      await node.start();
      await cluster.waitForMembers(['node-1']);
      node.hang();
      await node.stop();
      expect(node.exitCode).toBe(0);
      await node.stop();
      await node.kill();
      expect(await node.terminate()).toBe(0);
      // The same for the NATS server.
      const natsPid = nats.pid!;
      nats.hang();
      await nats.restart();
      expect(alive(natsPid)).toBe(false);
      nats.hang();
      await nats.stop();
      await nats.stop();
      await nats.kill();
      expect(nats.running).toBe(false);
    } finally {
      await cluster.close();
      await cluster.close();
    }
  });
});

describe('a call the cluster cannot serve says why', () => {
  it('isolateFromControlPlane on a cluster without control-plane proxies names the option, not a missing node', async () => {
    const cluster = await ProcessCluster.start({ nodes: 1, partitions: 8, controlPlaneProxies: false });
    try {
      expect(() => cluster.isolateFromControlPlane('node-1')).toThrow(/controlPlaneProxies: false/);
      expect(() => cluster.isolateFromControlPlane('node-9')).toThrow(/no node node-9/);
    } finally {
      await cluster.close();
    }
  });
});

describe('the process that started them goes away', () => {
  /** Starts the worker fixture and reads its `{ pid, dir }`. */
  async function startWorker(args: string[]): Promise<{ worker: ChildProcess; pid: number; dir: string }> {
    const worker = spawn(process.execPath, ['--import', 'tsx', fixture('worker-with-nats.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    worker.stdout.setEncoding('utf8');
    worker.stdout.on('data', (d: string) => (out += d));
    try {
      await waitFor('the worker to start nats-server', () => {
        if (worker.exitCode !== null) throw new Error(`the worker exited (${worker.exitCode})`);
        return out.includes('\n');
      }, 30_000);
    } catch (err) {
      worker.kill('SIGKILL');
      throw err;
    }
    const { pid, dir } = JSON.parse(out) as { pid: number; dir: string };
    expect(alive(pid)).toBe(true);
    expect(existsSync(dir)).toBe(true);
    return { worker, pid, dir };
  }

  async function expectCleanedUp(pid: number, dir: string): Promise<void> {
    try {
      await waitFor('the nats-server to be ended and the dir removed', () => !alive(pid) && !existsSync(dir), 5000);
    } catch (err) {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  it('SIGTERM: its exit handler ends the nats-server and removes the dir', async () => {
    const { worker, pid, dir } = await startWorker([]);
    const ended = new Promise<NodeJS.Signals | null>((r) => worker.once('exit', (_code, sig) => r(sig)));
    worker.kill('SIGTERM');
    await expectCleanedUp(pid, dir);
    // The hook re-raises the signal: the worker still ends as SIGTERM ends it.
    expect(await ended).toBe('SIGTERM');
  });

  it('SIGTERM that its stuck event loop never handles, then SIGKILL (as vitest ends a fork): nothing is left', async () => {
    const { worker, pid, dir } = await startWorker(['--block']);
    worker.kill('SIGTERM');
    worker.kill('SIGKILL');
    await expectCleanedUp(pid, dir);
  });
});
