/**
 * `gridlink dashboard --timeout <dur>`: the dashboard's reads of the control plane (the topology
 * record and the leases, at start and every --interval) are bounded by --timeout, as every call
 * of the one-shot verbs is. A control plane that does not answer (a hung nats-server: SIGSTOP)
 * used to hold the dashboard for as long as NatsControlPlane retries a read (10 s a read): it did
 * not start listening, and once running, the members' health and traffic were not scraped again
 * while it waited. Real nats-server, a real grid node.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsControlPlane, startNode, TOPOLOGY_KEY, type GridNode, type TopologyRecord } from '@gridlink/node';
import { NatsCluster, waitFor } from '@gridlink/testkit';
import { runCli } from '../src/run.js';

const BUCKET = 'dash-timeout';
let nats: NatsCluster;
let nodeCp: NatsControlPlane;
let node: GridNode;

beforeAll(async () => {
  nats = await NatsCluster.start({ servers: 1 });
  nodeCp = await NatsControlPlane.connect({ servers: nats.urls, bucket: BUCKET, connectTimeoutMs: 20_000 });
  node = await startNode({ id: 'node-1', controlPlane: nodeCp, port: 0, httpPort: 0, partitions: 8, backups: 0, bootstrapNodes: 1 });
  await waitFor('the cluster to form', async () => (await nodeCp.get<TopologyRecord>(TOPOLOGY_KEY))?.value.members['node-1'] !== undefined, 20_000);
}, 60_000);

afterAll(async () => {
  nats?.servers[0]?.resume();
  node?.kill();
  await nodeCp?.close().catch(() => undefined);
  await nats?.close();
});

/** The dashboard's event stream, counting the `metrics` events it delivers. */
async function events(url: string): Promise<{ metrics: () => number; close: () => void }> {
  let text = '';
  const req = http.get(new URL('/events', url));
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  res.setEncoding('utf8');
  res.on('data', (d: string) => (text += d));
  res.on('error', () => undefined);
  return { metrics: () => text.split('event: metrics\n').length - 1, close: () => req.destroy() };
}

describe('gridlink dashboard --timeout', () => {
  it('bounds the reads of each refresh: the members are still scraped every interval while the control plane does not answer', async () => {
    const abort = new AbortController();
    let url = '';
    let err = '';
    const running = runCli(
      ['dashboard', '--control-plane', nats.urls[0]!, '--bucket', BUCKET, '--timeout', '400ms', '--interval', '200ms', '--port', '0', '--http', `node-1=http://127.0.0.1:${node.httpPort!}`],
      { stdout: () => undefined, stderr: (t) => (err += t) },
      { env: {}, signal: abort.signal, onDashboard: (u) => (url = u) },
    );
    const stream = await waitFor('the dashboard to listen', () => url !== '', 20_000).then(() => events(url));
    try {
      await waitFor('metrics events', () => stream.metrics() >= 2, 10_000);
      nats.servers[0]!.hang();
      try {
        // A refresh gives its two reads up after 400 ms each, then scrapes: three scrapes take
        // about 3 s. Without the bound, one refresh waited 20 s (10 s of retries a read).
        const before = stream.metrics();
        await waitFor('three more metrics events while NATS does not answer', () => stream.metrics() >= before + 3, 8000);
      } finally {
        nats.servers[0]!.resume();
      }
    } finally {
      stream.close();
      abort.abort();
    }
    expect(await running).toBe(0);
    expect(err).toBe('');
  }, 60_000);

  it('bounds the first read too: a dashboard started while the control plane does not answer listens after --timeout, then shows the cluster once it answers', async () => {
    const cp = await NatsControlPlane.connect({ servers: nats.urls, bucket: BUCKET, create: false, connectTimeoutMs: 20_000 });
    const abort = new AbortController();
    let url = '';
    try {
      nats.servers[0]!.hang();
      let running: Promise<number>;
      try {
        running = runCli(['dashboard', '--timeout', '500ms', '--port', '0'], { stdout: () => undefined, stderr: () => undefined }, { controlPlane: cp, env: {}, signal: abort.signal, onDashboard: (u) => (url = u) });
        // Two reads of 500 ms at most, then it listens (it used to wait 20 s).
        await waitFor('the dashboard to listen while NATS does not answer', () => url !== '', 5000);
      } finally {
        nats.servers[0]!.resume();
      }
      await waitFor(
        'the page to show the cluster',
        async () => ((await (await fetch(new URL('/api/topology', url))).json()) as { nodes?: { id: string }[] } | null)?.nodes?.some((n) => n.id === 'node-1') === true,
        20_000,
      );
      abort.abort();
      expect(await running).toBe(0);
    } finally {
      abort.abort();
      await cp.close();
    }
  }, 60_000);
});
