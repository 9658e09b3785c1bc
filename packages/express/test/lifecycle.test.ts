/**
 * gridlink(app, config).close() while the client is still connecting: it waits for the connect
 * and closes the client it made, so nothing gridlink() started outlives close(). The grid is an
 * embedded node behind a TCP proxy on 127.0.0.1 that holds the handshake until the test lets it go.
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { GridClient, type GridClientConfig } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { gridlink } from '@gridlink/express';
import { gate, waitFor } from './helpers.js';

let cluster: LocalCluster;

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
});
afterAll(async () => {
  await cluster?.stop();
});

/** A proxy to the grid node that forwards nothing until `release()`; counts its open client sockets. */
async function heldProxy(): Promise<{ endpoint: string; open: Set<Socket>; release: () => void; close: () => void }> {
  const port = Number(cluster.endpoints[0]!.split(':')[1]);
  const g = gate();
  const open = new Set<Socket>();
  const server = createServer((down) => {
    open.add(down);
    down.on('close', () => open.delete(down));
    down.on('error', () => undefined);
    down.pause();
    void g.promise.then(() => {
      if (down.destroyed) return;
      const up = connect(port, '127.0.0.1', () => {
        down.pipe(up);
        up.pipe(down);
        down.resume();
      });
      up.on('error', () => down.destroy());
      up.on('close', () => down.destroy());
      down.on('close', () => up.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: proxyPort } = server.address() as AddressInfo;
  return {
    endpoint: `127.0.0.1:${proxyPort}`,
    open,
    release: g.open,
    close: () => {
      for (const s of open) s.destroy();
      server.close();
    },
  };
}

describe('gridlink().close() during the connect', () => {
  it('waits for the connect in flight and closes the client it made before resolving', async () => {
    const proxy = await heldProxy();
    const made: GridClient[] = [];
    const closed = new Set<GridClient>();
    const realConnect = GridClient.connect.bind(GridClient);
    const spy = vi.spyOn(GridClient, 'connect').mockImplementation(async (config: GridClientConfig) => {
      const c = await realConnect(config);
      made.push(c);
      const realClose = c.close.bind(c);
      c.close = () => realClose().then(() => void closed.add(c));
      return c;
    });
    try {
      const app = express();
      const grid = gridlink(app, { endpoints: [proxy.endpoint], connectTimeout: 10_000 });
      await waitFor(() => proxy.open.size > 0, 5000, 'the connect to reach the grid');
      const closing = grid.close();
      proxy.release(); // the handshake completes only after close() was called
      await closing;
      // Without waiting, close() resolved before the client existed, which then stayed open
      // until the connect finished on its own.
      expect(made).toHaveLength(1);
      expect(closed.has(made[0]!)).toBe(true);
      expect(grid.client).toBeUndefined();
      expect(app.locals.grid).toBeUndefined();
      expect(grid.isReady()).toBe(false);
      await expect(grid.ready).rejects.toThrow('closed');
      await waitFor(() => proxy.open.size === 0, 5000, 'every socket to the grid closed');
    } finally {
      spy.mockRestore();
      proxy.close();
    }
  });

  it('a connect that fails after close() schedules no retry', async () => {
    const proxy = await heldProxy();
    const spy = vi.spyOn(GridClient, 'connect');
    const errors: unknown[] = [];
    try {
      const grid = gridlink(express(), { endpoints: [proxy.endpoint], connectTimeout: 300 }, { reconnectDelayMs: 1, onError: (e) => errors.push(e) });
      await waitFor(() => proxy.open.size > 0, 5000, 'the connect to reach the grid');
      await grid.close();
      // close() returned after the attempt failed: its error was reported, and no attempt follows.
      expect(errors).toHaveLength(1);
      expect(spy).toHaveBeenCalledTimes(1);
      // (The attempt's socket is destroyed by GridClient.connect when it fails; this proxy holds
      // its side paused, so it would only see the close once it reads: not asserted here.)
    } finally {
      spy.mockRestore();
      proxy.close();
    }
  });
});
