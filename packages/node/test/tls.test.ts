import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bytesSerializer, type GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { TestConnection } from './helpers/client.js';
import { connectClient } from './helpers/grid.js';

describe('TLS and auth', () => {
  let dir: string;
  let key: Buffer;
  let cert: Buffer;
  let cluster: LocalCluster;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gridlink-tls-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    key = readFileSync(join(dir, 'key.pem'));
    cert = readFileSync(join(dir, 'cert.pem'));
    cluster = await LocalCluster.start({ nodes: 2, backups: 1, partitions: 8, tls: { key, cert, ca: cert }, authToken: 'secret' });
  });
  let clients: GridClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves clients and replicates between nodes over TLS, with the token', async () => {
    const connect = async (endpoint: string): Promise<GridClient> => {
      const cl = await connectClient([endpoint], { tls: { ca: cert }, auth: { token: 'secret' } });
      clients.push(cl);
      return cl;
    };
    const c = (await connect(cluster.endpoints[0]!)).cache<string, Uint8Array>('t', { serializer: bytesSerializer });
    for (let i = 0; i < 20; i++) await c.put(`k${i}`, new Uint8Array([i]));
    // Every partition has a backup on the other node: the writes were replicated over TLS.
    const [n1, n2] = cluster.nodeIds as [string, string];
    expect(cluster.node(n1).store.localSize('t') + cluster.node(n2).store.localSize('t')).toBe(40);
    const other = (await connect(cluster.endpoints[1]!)).cache<string, Uint8Array>('t', { serializer: bytesSerializer });
    for (let i = 0; i < 20; i++) expect([...((await other.get(`k${i}`)) ?? [])]).toEqual([i]);
  });

  // Refusals are checked at the handshake, on the wire.
  it('refuses a wrong token and a plaintext client', async () => {
    await expect(TestConnection.connect(cluster.endpoints[0]!, 's3', 3000, { ca: cert, authToken: 'nope' })).rejects.toThrow(/handshake refused|closed/);
    await expect(TestConnection.connect(cluster.endpoints[0]!, 's4', 1000)).rejects.toThrow();
  });
});
