/**
 * Bad TLS settings are the user's to fix, not a network fault to retry for ever.
 *
 * - What can be checked up front is checked when the client is made: `tls` options node:tls would
 *   throw on at each connection attempt (a PEM that is not one, a key that does not match its
 *   certificate, a cipher list matching nothing, a wrong type) or silently ignore (a `ca` that is
 *   a file path rather than a certificate, natsAddressFinder's `caFile`) are a GridConfigError
 *   naming the field, and nothing is connected.
 * - A failure only the handshake shows (the node's certificate is not trusted) is a GridTlsError
 *   naming TLS: in connect()'s error, not retryable when every endpoint failed so; for a node
 *   tried in the background, reported once on the `error` event while the client keeps trying.
 *
 * Against real grid nodes serving TLS (node:tls) on 127.0.0.1, certificates made with openssl.
 */
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryControlPlane, startNode, type GridNode } from '@gridlink/node';
import { GridClient, GridConfigError, GridConnectionError, GridTlsError, resolveConfig, type GridError } from '@gridlink/client';
import { hasOpenssl, selfSigned } from './helpers/certs.js';
import { waitFor } from './helpers/wait.js';

const available = hasOpenssl();
let dir = '';
let remove: (() => void) | undefined;
/** Two self-signed certificates for 127.0.0.1, each with its key. */
const pem: Record<'a' | 'b', { cert: Buffer; key: Buffer }> = {} as never;
const nodes: GridNode[] = [];
/** A node serving TLS with certificate a, and one (of another control plane) with certificate b. */
let nodeA: GridNode;
let nodeB: GridNode;

beforeAll(async () => {
  if (!available) return;
  const made = selfSigned('gridlink-tls-options-', { a: 'node-a', b: 'node-b' });
  dir = made.dir;
  remove = made.remove;
  pem.a = made.certs.a;
  pem.b = made.certs.b;
  nodeA = await startNode({ id: 'tls-a', controlPlane: new MemoryControlPlane(), host: '127.0.0.1', port: 0, partitions: 16, backups: 0, tls: pem.a });
  nodes.push(nodeA);
  nodeB = await startNode({ id: 'tls-b', controlPlane: new MemoryControlPlane(), host: '127.0.0.1', port: 0, partitions: 16, backups: 0, tls: pem.b });
  nodes.push(nodeB);
});

afterAll(() => {
  for (const n of nodes) n.kill();
  remove?.();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The GridConfigError `resolveConfig` throws for `tls` (fails when it throws something else or nothing). */
function tlsConfigError(tls: unknown): GridConfigError {
  try {
    resolveConfig({ endpoints: ['127.0.0.1:1'], tls });
  } catch (e) {
    expect(e).toBeInstanceOf(GridConfigError);
    return e as GridConfigError;
  }
  throw new Error(`expected a GridConfigError for tls ${String(tls)}`);
}

describe.skipIf(!available)('tls options checked when the client is made', () => {
  it('names the field of each option node:tls would refuse or ignore', () => {
    const { cert, key } = pem.a;
    expect(tlsConfigError({ ca: 'not a certificate' }).field).toBe('tls.ca');
    const path = tlsConfigError({ ca: join(dir, 'a.pem') });
    expect(path.field).toBe('tls.ca');
    expect(path.reason).toMatch(/file path\?/);
    expect(tlsConfigError({ ca: Buffer.from('garbage') }).field).toBe('tls.ca');
    expect(tlsConfigError({ ca: [cert, 'garbage'] }).field).toBe('tls.ca[1]');
    expect(tlsConfigError({ ca: 42 }).field).toBe('tls.ca');
    expect(tlsConfigError({ ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }).field).toBe('tls.ca');
    expect(tlsConfigError({ cert: 'garbage', key }).field).toBe('tls.cert');
    expect(tlsConfigError({ cert, key: 'garbage' }).field).toBe('tls.key');
    const mismatch = tlsConfigError({ cert, key: pem.b.key });
    expect(mismatch.field).toBe('tls.key');
    expect(mismatch.reason).toMatch(/tls\.cert/);
    expect(tlsConfigError({ pfx: Buffer.from('x') }).field).toBe('tls.pfx');
    expect(tlsConfigError({ ciphers: 'NO-SUCH-CIPHER' }).field).toBe('tls.ciphers');
    expect(tlsConfigError({ minVersion: 'TLSv9' }).field).toBe('tls.minVersion');
    expect(tlsConfigError({ key, passphrase: 5 }).field).toBe('tls.passphrase');
    expect(tlsConfigError({ rejectUnauthorized: 'yes' }).field).toBe('tls.rejectUnauthorized');
    expect(tlsConfigError({ servername: 5 }).field).toBe('tls.servername');
    expect(tlsConfigError({ checkServerIdentity: true }).field).toBe('tls.checkServerIdentity');
    // natsAddressFinder takes file paths; node:tls ignores these names: the CA would not be used.
    expect(tlsConfigError({ caFile: join(dir, 'a.pem') }).field).toBe('tls.caFile');
    expect(tlsConfigError({ certFile: 'x', keyFile: 'y' }).field).toBe('tls.certFile');
    expect(tlsConfigError(5).field).toBe('tls');

    // Good options pass as they are.
    expect(resolveConfig({ endpoints: ['a'], tls: { ca: cert } }).tls).toEqual({ ca: cert });
    expect(resolveConfig({ endpoints: ['a'], tls: { ca: [cert, pem.b.cert], cert, key, rejectUnauthorized: true, servername: 'localhost' } }).tls).toBeDefined();
    expect(resolveConfig({ endpoints: ['a'], tls: { ca: cert.toString('utf8') } }).tls).toBeDefined();
  });

  it('connect() rejects with the GridConfigError before any connection is made', async () => {
    let accepted = 0;
    const server = net.createServer((s) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const endpoint = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    for (const tls of [{ ca: join(dir, 'a.pem') }, { cert: pem.a.cert, key: 'garbage' }, { ciphers: 'NO-SUCH-CIPHER' }]) {
      const err = await GridClient.connect({ endpoints: [endpoint], tls, connectTimeout: 2000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GridConfigError);
      expect((err as GridConfigError).field).toMatch(/^tls\./);
    }
    expect(accepted).toBe(0);
  });
});

describe.skipIf(!available)('a certificate the client does not trust', () => {
  it('connect() fails with a GridTlsError naming TLS, not retryable', async () => {
    const err = await GridClient.connect({ endpoints: [`127.0.0.1:${nodeB.port}`], tls: { ca: pem.a.cert }, connectTimeout: 2000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GridConnectionError);
    const c = err as GridConnectionError;
    const cause = c.endpoints[0]!.error;
    expect(cause).toBeInstanceOf(GridTlsError);
    expect((cause as GridTlsError).code).toBe('GRID_TLS');
    expect((cause as GridTlsError).retryable).toBe(false);
    expect(c.endpoints[0]!.cause).toMatch(/TLS/);
    expect(c.message).toMatch(/TLS/);
    expect(c.retryable).toBe(false);
  });

  it('a node that does not serve TLS: a GridTlsError naming TLS', async () => {
    const plain = await startNode({ id: 'plain', controlPlane: new MemoryControlPlane(), host: '127.0.0.1', port: 0, partitions: 16, backups: 0 });
    nodes.push(plain);
    const err = await GridClient.connect({ endpoints: [`127.0.0.1:${plain.port}`], tls: { ca: pem.a.cert }, connectTimeout: 2000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GridConnectionError);
    const cause = (err as GridConnectionError).endpoints[0]!.error;
    expect(cause).toBeInstanceOf(GridTlsError);
    expect((cause as GridTlsError).message).toMatch(/TLS/);
  });

  it('a node tried in the background is reported once, and tried again with backoff', async () => {
    const bad = `127.0.0.1:${nodeB.port}`;
    let scheduled = 0;
    // Its first failure may come before connect() returns the client (then, with no listener yet,
    // it goes to logger.error), the later ones after: count both ways.
    const reports: { message: string; code: unknown }[] = [];
    const client = await GridClient.connect({
      endpoints: [`127.0.0.1:${nodeA.port}`, bad],
      tls: { ca: pem.a.cert },
      connectTimeout: 2000,
      reconnect: { minDelay: 20, maxDelay: 40, jitter: 0 },
      logger: {
        debug: (message, fields) => {
          if (message === 'reconnect scheduled' && fields?.address === bad) scheduled++;
        },
        error: (message, fields) => reports.push({ message, code: fields?.code }),
      },
    });
    cleanups.push(() => client.close());
    client.on('error', (e: GridError) => reports.push({ message: e.message, code: e.code }));
    await client.cache<string, string>('tls-options').put('k', 'v');
    await waitFor(() => scheduled >= 5, 10_000, `five reconnects of ${bad} scheduled`);
    expect(reports).toHaveLength(1);
    expect(reports[0]!.code).toBe('GRID_TLS');
    expect(reports[0]!.message).toContain(bad);
    expect(reports[0]!.message).toMatch(/TLS/);
  });
});
