import { afterEach, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';

function value(text: string, name: string, labels = ''): number {
  const re = new RegExp(`^${name}\\{${labels}[^}]*\\} (\\S+)$`, 'm');
  const m = re.exec(text);
  if (!m) throw new Error(`no ${name}{${labels}…} in\n${text}`);
  return Number(m[1]);
}

describe('node metrics (Prometheus naming, operator metrics)', () => {
  let c: LocalCluster | undefined;
  let client: GridClient | undefined;
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await c?.stop();
    c = undefined;
  });

  it('counters are counters, gauges carry units, and the incident metrics move', async () => {
    c = await LocalCluster.start({ nodes: 3, partitions: 16, backups: 1, http: true, autoAdjust: { enabled: false } });
    const cl = c;
    await cl.waitForStable();
    client = await GridClient.connect({ endpoints: cl.endpoints, requestTimeout: 1000, operationTimeout: 10_000 });
    const cache = client.cache<string, string>('m');
    for (let i = 0; i < 100; i++) await cache.put(`k${i}`, 'x'.repeat(100));
    await expect(client.cache('bad').create({ backups: 17 })).rejects.toThrow(/backups/);

    const scrape = async (id: string): Promise<string> => (await fetch(`http://127.0.0.1:${cl.node(id).httpPort!}/metrics`)).text();
    const ids = cl.nodeIds;
    const texts = await Promise.all(ids.map(scrape));
    for (const text of texts) {
      for (const n of ['resyncs', 'evictions', 'expired', 'rejected_requests', 'state_transfer_bytes', 'ops']) {
        expect(text).toContain(`# TYPE gridlink_node_${n}_total counter`);
      }
      expect(text).not.toMatch(/# TYPE \S+_total gauge/);
      expect(text).toContain('# TYPE gridlink_node_replication_lag_writes gauge');
      expect(value(text, 'gridlink_node_lease_age_seconds')).toBeLessThan(5);
      expect(value(text, 'gridlink_node_topology_age_seconds')).toBeGreaterThanOrEqual(0);
      expect(value(text, 'gridlink_node_partitions_under_replicated')).toBe(0);
      expect(value(text, 'gridlink_node_partitions_lost')).toBe(0);
    }
    // The refused cache creation is counted by code on the node that answered it.
    expect(texts.reduce((n, t) => n + (t.includes('code="GRID_BAD_REQUEST"') ? value(t, 'gridlink_node_rejected_requests_total', 'code="GRID_BAD_REQUEST"') : 0), 0)).toBe(1);

    // A graceful stop records its handoff; the restarted node pulls its partitions (bytes, duration).
    const [a, b] = ids as [string, string];
    const stopping = cl.node(a);
    await cl.stopNode(a);
    const stoppedText = await stopping.metrics.registry.metrics();
    expect(value(stoppedText, 'gridlink_node_handoff_duration_seconds_count')).toBe(1);
    // b learns of a's departure through the topology: poll its gauge with a deadline.
    const deadline = Date.now() + 10_000;
    while (value(await scrape(b), 'gridlink_node_partitions_under_replicated') === 0) {
      if (Date.now() > deadline) throw new Error('b never reported under-replicated partitions');
      await new Promise((r) => setTimeout(r, 20));
    }
    await cl.restart(a);
    await cl.waitForStable(20_000);
    const after = await scrape(a);
    expect(value(after, 'gridlink_node_state_transfer_bytes_total')).toBeGreaterThan(0);
    expect(value(after, 'gridlink_node_state_transfer_duration_seconds_count')).toBeGreaterThan(0);
    expect(value(after, 'gridlink_node_state_transfers_total')).toBe(value(after, 'gridlink_node_state_transfer_duration_seconds_count'));
  }, 30_000);

  it('client stats: partition-aware routing hits the primary; without it requests are forwarded (misses)', async () => {
    c = await LocalCluster.start({ nodes: 3, partitions: 16, backups: 1 });
    const cl = c;
    await cl.waitForStable();
    client = await GridClient.connect({ endpoints: cl.endpoints, requestTimeout: 1000, operationTimeout: 10_000 });
    const aware = client.cache<string, number>('r');
    await aware.put('warm-up', 0);
    const before = client.stats().routing;
    for (let i = 0; i < 60; i++) await aware.put(`k${i}`, i);
    const s = client.stats().routing;
    expect(s.misses - before.misses).toBe(0);
    expect(s.hits - before.hits).toBe(60);
    const blind = await GridClient.connect({ endpoints: cl.endpoints, partitionAware: false, requestTimeout: 1000, operationTimeout: 10_000 });
    try {
      const cache = blind.cache<string, number>('r');
      for (let i = 0; i < 60; i++) expect(await cache.get(`k${i}`)).toBe(i);
      const b = blind.stats().routing;
      expect(b.misses).toBeGreaterThan(0);
      expect(b.hits + b.misses).toBe(b.primary + b.roundRobin);
    } finally {
      await blind.close();
    }
  }, 30_000);
});
