import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, partitions: 16 });
});
afterAll(async () => {
  await cluster?.stop();
});

it('dnsAddressFinder: a lookup the client gave up on (a DNS server that never answers) does not keep the process alive after close()', async () => {
  // A DNS server on loopback that receives every query and answers none.
  const dnsServer = dgram.createSocket('udp4');
  let queries = 0;
  dnsServer.on('message', () => queries++);
  await new Promise<void>((r) => dnsServer.bind(0, '127.0.0.1', r));
  const dnsPort = dnsServer.address().port;
  try {
    const script = fileURLToPath(new URL('./fixtures/dns-close-child.ts', import.meta.url));
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script, cluster.endpoints.join(','), String(dnsPort)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const DEADLINE = 30_000; // generous: includes TypeScript loading on a busy machine
    const exit = await new Promise<{ code: number | string; at: number }>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve({ code: 'did not exit on its own', at: Date.now() });
      }, DEADLINE);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve({ code: c ?? -1, at: Date.now() });
      });
    });
    expect(exit.code, `stdout: ${out}\nstderr: ${err}`).toBe(0);
    expect(out).toContain('connected');
    const closedAt = Number(/closed (\d+)/.exec(out)?.[1]);
    expect(queries).toBeGreaterThan(0);
    // A hung lookup left running lasts the resolver's own timeouts (about 26 s with node's defaults).
    expect(exit.at - closedAt, `stdout: ${out}\nstderr: ${err}`).toBeLessThan(5000);
  } finally {
    dnsServer.close();
  }
});
