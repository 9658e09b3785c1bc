/**
 * gridlink(app, config) and the servers from app.listen: the owned client is closed when the last
 * server that used it closes or fails to listen (a real port conflict on 127.0.0.1), not when the
 * first of two closes; and gridlink() adds no 'error' listener to the servers.
 */
import type { Server } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import express5 from 'express';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient, GridClosedError } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { gridlink } from '@gridlink/express';
import { closeServer, teardown, waitFor } from './helpers.js';

let cluster: LocalCluster;
/** A port on 127.0.0.1 held by a plain TCP server for the whole file. */
let taken: { port: number; close: () => Promise<void> };

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  const blocker = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  taken = {
    port: (blocker.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => blocker.close(() => resolve())),
  };
});
afterAll(async () => {
  await taken?.close();
  await teardown(cluster);
});

/** Whether the client was closed (it refuses new work once its close() started). */
function isClosed(client: GridClient): boolean {
  try {
    client.lock('listen-lifecycle-probe');
    return false;
  } catch (e) {
    if (e instanceof GridClosedError) return true;
    throw e;
  }
}

/** Listens on `port` of 127.0.0.1; resolves with the server once listening or with its listen error. */
function listenOn(app: { listen(port: number, host: string): Server }, port: number): Promise<{ server: Server; error?: NodeJS.ErrnoException }> {
  const server = app.listen(port, '127.0.0.1');
  return new Promise((resolve) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      resolve({ server, error });
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve({ server });
    };
    server.once('error', onError);
    server.once('listening', onListening);
  });
}

function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

async function health(server: Server): Promise<number> {
  return (await fetch(`http://127.0.0.1:${portOf(server)}/health/ready`)).status;
}

describe('gridlink() and the servers from app.listen', () => {
  for (const [label, make] of [
    ['Express 5', express5],
    ['Express 4', express4],
  ] as const) {
    it(`${label}: a listen that fails (port in use) closes the owned client`, async () => {
      const app = make() as unknown as express5.Express;
      const grid = gridlink(app, { endpoints: cluster.endpoints });
      const client = await grid.ready;
      try {
        const { error } = await listenOn(app, taken.port);
        expect(error?.code).toBe('EADDRINUSE');
        // The server emits neither 'listening' nor 'close': without the fix the client (its
        // sockets, heartbeats and timers) stayed open and kept the process alive.
        await waitFor(() => isClosed(client), 5000, 'the owned client to close');
        expect(grid.isReady()).toBe(false);
        await grid.close(); // the close already under way: resolves once it is done
        expect(client.topology().nodes.some((n) => n.connected)).toBe(false);
      } finally {
        await grid.close();
      }
    });
  }

  it('two servers share the client: closing the first leaves it open, closing the last closes it', async () => {
    const app = express5();
    const grid = gridlink(app, { endpoints: cluster.endpoints });
    const client = await grid.ready;
    const seen: unknown[] = [];
    app.get('/grid', (req, res) => {
      seen.push(req.grid);
      res.end('ok');
    });
    const a = (await listenOn(app, 0)).server;
    const b = (await listenOn(app, 0)).server;
    try {
      await closeServer(a);
      expect(isClosed(client)).toBe(false);
      expect(grid.isReady()).toBe(true);
      expect(await health(b)).toBe(200);
      expect((await fetch(`http://127.0.0.1:${portOf(b)}/grid`)).status).toBe(200);
      expect(seen).toEqual([client]);
      await client.cache('listen-lifecycle').put('k', 1); // still usable
      await closeServer(b);
      await waitFor(() => isClosed(client), 5000, 'the owned client to close with the last server');
      expect(grid.isReady()).toBe(false);
    } finally {
      await teardown(a.listening ? a : undefined, b.listening ? b : undefined, grid);
    }
  });

  it('a second server that fails to listen leaves the client to the one listening', async () => {
    const app = express5();
    const grid = gridlink(app, { endpoints: cluster.endpoints });
    const client = await grid.ready;
    const a = (await listenOn(app, 0)).server;
    try {
      // The second listen conflicts with the first server's own port.
      const { error } = await listenOn(app, portOf(a));
      expect(error?.code).toBe('EADDRINUSE');
      expect(isClosed(client)).toBe(false);
      expect(await health(a)).toBe(200);
      await closeServer(a);
      await waitFor(() => isClosed(client), 5000, 'the owned client to close with the last server');
    } finally {
      await teardown(a.listening ? a : undefined, grid);
    }
  });

  it('the client stays open while a server is still on its way to listening, and closes when it closes', async () => {
    const app = express5();
    const grid = gridlink(app, { endpoints: cluster.endpoints });
    const client = await grid.ready;
    // Both listens start before either settles: the failing one is released first (its error comes
    // on a later tick), the other one is still counted.
    const failing = listenOn(app, taken.port);
    const pending = listenOn(app, 0);
    expect((await failing).error?.code).toBe('EADDRINUSE');
    const { server: b, error } = await pending;
    try {
      expect(error).toBeUndefined();
      expect(isClosed(client)).toBe(false);
      expect(await health(b)).toBe(200);
      await closeServer(b);
      await waitFor(() => isClosed(client), 5000, 'the owned client to close with the last server');
    } finally {
      await teardown(b.listening ? b : undefined, grid);
    }
  });

  it('a server that fails and then listens again uses the client again while another server kept it open', async () => {
    const app = express5();
    const grid = gridlink(app, { endpoints: cluster.endpoints });
    const client = await grid.ready;
    const a = (await listenOn(app, 0)).server;
    const { server: b, error } = await listenOn(app, taken.port);
    try {
      expect(error?.code).toBe('EADDRINUSE');
      // Node's documented retry: listen again on the same server (here on a free port).
      await new Promise<void>((resolve) => b.listen(0, '127.0.0.1', resolve));
      await closeServer(a);
      expect(isClosed(client)).toBe(false);
      expect(await health(b)).toBe(200);
      await closeServer(b);
      await waitFor(() => isClosed(client), 5000, 'the owned client to close with the last server');
    } finally {
      await teardown(a.listening ? a : undefined, b.listening ? b : undefined, grid);
    }
  });

  it('a listen that throws (bad port) with no other server closes the client', async () => {
    const app = express5();
    const grid = gridlink(app, { endpoints: cluster.endpoints });
    const client = await grid.ready;
    try {
      expect(() => app.listen(-1, '127.0.0.1')).toThrow(RangeError);
      await waitFor(() => isClosed(client), 5000, 'the owned client to close');
    } finally {
      await grid.close();
    }
  });

  it('a client passed in is not closed by a failed listen (the caller owns it)', async () => {
    const app = express5();
    const own = await GridClient.connect({ endpoints: cluster.endpoints });
    const grid = gridlink(app, own);
    try {
      const { error } = await listenOn(app, taken.port);
      expect(error?.code).toBe('EADDRINUSE');
      await grid.close();
      expect(isClosed(own)).toBe(false);
      await own.cache('listen-lifecycle').put('k', 2);
    } finally {
      await own.close();
    }
  });

  it('adds no error listener: an app without one still gets the error thrown, as without gridlink()', async () => {
    for (const make of [express4, express5]) {
      const plain = make() as unknown as express5.Express;
      const app = make() as unknown as express5.Express;
      const grid = gridlink(app, { endpoints: cluster.endpoints });
      const s1 = plain.listen(0, '127.0.0.1');
      const s2 = app.listen(0, '127.0.0.1');
      try {
        expect(s2.listenerCount('error')).toBe(s1.listenerCount('error'));
      } finally {
        await new Promise<void>((resolve) => s1.once('listening', resolve));
        await new Promise<void>((resolve) => (s2.listening ? resolve() : s2.once('listening', resolve)));
        await teardown(s1, s2, grid);
      }
    }
  });
});
