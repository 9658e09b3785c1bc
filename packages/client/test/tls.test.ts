import { afterAll, beforeAll, expect, it } from 'vitest';
import { MemoryControlPlane, startNode, type GridNode } from '@gridlink/node';
import { GridClient, GridConnectionError } from '@gridlink/client';
import { hasOpenssl, selfSigned } from './helpers/certs.js';

const available = hasOpenssl();
let remove: (() => void) | undefined;
let cert: Buffer;
let node: GridNode | undefined;

beforeAll(async () => {
  if (!available) return;
  const made = selfSigned('gridlink-tls-', { node: 'localhost' });
  remove = made.remove;
  cert = made.certs.node.cert;
  node = await startNode({ id: 'tls-1', controlPlane: new MemoryControlPlane(), host: '127.0.0.1', port: 0, partitions: 16, backups: 0, tls: made.certs.node });
});

afterAll(() => {
  node?.kill();
  remove?.();
});

it.skipIf(!available)('connects over TLS with the node certificate as CA, and refuses an untrusted one', async () => {
  const endpoint = `127.0.0.1:${node!.port}`;
  const client = await GridClient.connect({ endpoints: [endpoint], tls: { ca: cert } });
  try {
    const c = client.cache<string, string>('tls');
    await c.put('k', 'v');
    expect(await c.get('k')).toBe('v');
  } finally {
    await client.close();
  }
  const err = await GridClient.connect({ endpoints: [endpoint], tls: true, connectTimeout: 2000 }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(GridConnectionError);
  expect((err as GridConnectionError).endpoints[0]!.cause).toMatch(/self[- ]signed|certificate/i);
});
