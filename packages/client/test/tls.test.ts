import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MemoryControlPlane, startNode, type GridNode } from '@gridlink/node';
import { GridClient, GridConnectionError } from '@gridlink/client';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const available = hasOpenssl();
let dir = '';
let cert: Buffer;
let node: GridNode | undefined;

beforeAll(async () => {
  if (!available) return;
  dir = mkdtempSync(join(tmpdir(), 'gridlink-tls-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  cert = readFileSync(join(dir, 'cert.pem'));
  const key = readFileSync(join(dir, 'key.pem'));
  node = await startNode({ id: 'tls-1', controlPlane: new MemoryControlPlane(), host: '127.0.0.1', port: 0, partitions: 16, backups: 0, tls: { key, cert } });
});

afterAll(() => {
  node?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
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
