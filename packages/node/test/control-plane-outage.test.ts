/**
 * A control plane that fails (reads and writes) for a while: the node must neither crash nor
 * leave an unhandled rejection behind, must stop trusting its lease while it cannot renew, and
 * must serve again on its own once the control plane is back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlaneUnavailableError, MemoryControlPlane, silentLogger, startNode, type ControlPlane, type GridNode, type KvEntry, type KvEvent } from '@gridlink/node';

/** A real in-memory control plane whose operations can be made to fail (as NATS does during a leader change). */
class FlakyControlPlane implements ControlPlane {
  failReads = false;
  failWrites = false;
  failedReads = 0;
  failedWrites = 0;
  constructor(private readonly inner = new MemoryControlPlane()) {}
  private read<R>(op: string, f: () => Promise<R>): Promise<R> {
    if (!this.failReads) return f();
    this.failedReads++;
    return Promise.reject(new ControlPlaneUnavailableError(op, new Error('jetstream is not enabled')));
  }
  private write<R>(op: string, f: () => Promise<R>): Promise<R> {
    if (!this.failWrites) return f();
    this.failedWrites++;
    return Promise.reject(new ControlPlaneUnavailableError(op, new Error('timeout')));
  }
  get<T>(key: string): Promise<KvEntry<T> | null> {
    return this.read('get', () => this.inner.get<T>(key));
  }
  list<T>(prefix: string): Promise<KvEntry<T>[]> {
    return this.read('list', () => this.inner.list<T>(prefix));
  }
  put<T>(key: string, value: T): Promise<number> {
    return this.write('put', () => this.inner.put(key, value));
  }
  create<T>(key: string, value: T): Promise<number> {
    return this.write('create', () => this.inner.create(key, value));
  }
  update<T>(key: string, value: T, revision: number): Promise<number> {
    return this.write('update', () => this.inner.update(key, value, revision));
  }
  delete(key: string): Promise<void> {
    return this.write('delete', () => this.inner.delete(key));
  }
  watch<T>(prefix: string, listener: (event: KvEvent<T>) => void): () => void {
    return this.inner.watch(prefix, listener);
  }
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('control plane outage (node level)', () => {
  let node: GridNode | undefined;
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    rejections.push(reason);
  };
  afterEach(() => {
    node?.kill();
    node = undefined;
    process.off('unhandledRejection', onRejection);
    rejections.length = 0;
  });

  it('failing reads and writes: no unhandled rejection, the lease is not trusted, and it serves again afterwards', async () => {
    process.on('unhandledRejection', onRejection);
    const cp = new FlakyControlPlane();
    node = await startNode({ id: 'a', controlPlane: cp, port: 0, partitions: 8, backups: 0, logger: silentLogger });
    const n = node;
    await until(() => n.isServing(), 'the node to serve');
    cp.failReads = true;
    cp.failWrites = true;
    await until(() => !n.leaseValid(), 'the lease to lapse');
    // Renewals succeed again, reads still fail: the topology re-read a lease after the lapse
    // fails, is retried, and until one succeeds the lease is not trusted.
    cp.failWrites = false;
    await until(() => cp.failedReads >= 2, 'the failed topology re-reads', 10_000);
    expect(n.running).toBe(true);
    expect(n.leaseValid()).toBe(false);
    expect(n.isServing()).toBe(false);
    cp.failReads = false;
    await until(() => n.leaseValid() && n.isServing(), 'the node to serve again');
    expect(rejections).toEqual([]);
  });
});
