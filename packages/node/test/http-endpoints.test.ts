/**
 * The node's HTTP endpoints as a scraper, a probe, a proxy or a misbehaving client meets them:
 * methods, request targets, pipelining, concurrent scrapes, and the Prometheus text format.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { LocalCluster } from '@gridlink/node';
import { HTTP_PIPELINE_MAX } from '@gridlink/node/internal';
import { Op } from '@gridlink/protocol';
import { TestConnection } from './helpers/client.js';

const PATHS = ['/health/live', '/health/ready', '/health/safe', '/metrics'];

/** Writes `request` (raw HTTP/1.1) on a new connection and reads until the node closes it, or `ms` passed. */
function raw(port: number, request: string, ms = 8000): Promise<{ text: string; closedByNode: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(request));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closedByNode: false });
    }, ms);
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('error', () => {}); // a reset is a close too
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closedByNode: true });
    });
  });
}

/**
 * Checks `text` against the Prometheus text exposition format (0.0.4) and returns the samples:
 * every sample belongs to a family announced once by HELP and TYPE before it, names and label
 * names are legal, label values are quoted and escaped, values are floats, and every histogram
 * series has cumulative buckets ending in +Inf equal to its _count.
 */
function parseExposition(text: string): Map<string, number> {
  expect(text.endsWith('\n')).toBe(true);
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const samples = new Map<string, number>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleRe = new RegExp(`^(${NAME})(\\{(.*)\\})? (\\S+)$`);
  const labelRe = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)/;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line))) {
      expect(helped.has(m[1]!), `HELP twice: ${line}`).toBe(false);
      helped.add(m[1]!);
      continue;
    }
    if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      expect(types.has(m[1]!), `TYPE twice: ${line}`).toBe(false);
      types.set(m[1]!, m[2]!);
      continue;
    }
    expect(line.startsWith('#'), `a comment that is neither HELP nor TYPE: ${line}`).toBe(false);
    m = sampleRe.exec(line);
    expect(m, `not a sample line: ${line}`).not.toBeNull();
    const [, name, , labels = '', value] = m!;
    const family = types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, '');
    expect(types.has(family), `sample of no announced family: ${line}`).toBe(true);
    if (family !== name) expect(types.get(family)).toBe('histogram');
    let rest = labels;
    const names = new Set<string>();
    while (rest !== '') {
      const l = labelRe.exec(rest);
      expect(l, `bad labels: ${line}`).not.toBeNull();
      expect(names.has(l![1]!), `label twice: ${line}`).toBe(false);
      names.add(l![1]!);
      rest = rest.slice(l![0].length);
    }
    expect(/^([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]Inf|NaN)$/.test(value!), `bad value: ${line}`).toBe(true);
    samples.set(`${name}{${labels}}`, Number(value));
  }
  // Histograms: cumulative buckets, +Inf = _count, per series.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, [number, number][]>();
    for (const [key, v] of samples) {
      if (!key.startsWith(`${family}_bucket{`)) continue;
      const labels = key.slice(family.length + '_bucket{'.length, -1);
      const le = /(?:^|,)le="([^"]+)"/.exec(labels)![1]!;
      const rest = labels.replace(/(^|,)le="[^"]+"/, '').replace(/^,/, '');
      const list = series.get(rest) ?? [];
      list.push([le === '+Inf' ? Infinity : Number(le), v]);
      series.set(rest, list);
    }
    for (const [rest, list] of series) {
      list.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < list.length; i++) expect(list[i]![1]).toBeGreaterThanOrEqual(list[i - 1]![1]);
      expect(list.at(-1)![0]).toBe(Infinity);
      expect(samples.get(`${family}_count{${rest}}`)).toBe(list.at(-1)![1]);
    }
  }
  return samples;
}

describe('HTTP endpoints', () => {
  let cluster: LocalCluster;
  let port: number;
  let base: string;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8, http: true });
    port = cluster.node(cluster.nodeIds[0]!).httpPort!;
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('answers GET and HEAD; any other method on an endpoint is 405 with Allow (a POST /metrics was answered as a scrape); unknown paths are 404', async () => {
    for (const path of PATHS) {
      const get = await fetch(base + path);
      expect([path, get.status]).toEqual([path, 200]);
      const getBody = await get.text();
      expect(getBody.length).toBeGreaterThan(0);
      const head = await fetch(base + path, { method: 'HEAD' });
      expect([path, head.status, await head.text()]).toEqual([path, 200, '']);
      expect(head.headers.get('content-type')).toBe(get.headers.get('content-type'));
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
        const r = await fetch(base + path, { method });
        expect([path, method, r.status, r.headers.get('allow'), await r.text()]).toEqual([path, method, 405, 'GET, HEAD', '']);
      }
    }
    for (const path of ['/', '/nope', '/metrics/', '/health', '/health/readyx']) {
      expect([path, (await fetch(base + path)).status]).toEqual([path, 404]);
      expect([path, (await fetch(base + path, { method: 'POST' })).status]).toEqual([path, 404]);
    }
    expect((await fetch(`${base}/health/ready?verbose=1`)).status).toBe(200);
  });

  it('takes an absolute-form request target, as a request through a proxy carries it (it was 404)', async () => {
    const r = await raw(port, `GET http://127.0.0.1:${port}/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(r.text).toContain('"live":true');
    const m = await raw(port, `GET HTTP://127.0.0.1:${port}/metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(m.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(m.text).toContain('gridlink_node_topology_version');
  });

  it('closes a connection that pipelines more requests than it takes answers for, and serves everyone else (it buffered every answer: ~100 MB for one client)', async () => {
    const n = 20 * HTTP_PIPELINE_MAX;
    const flood = raw(port, 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(n));
    // Meanwhile others are served.
    expect((await fetch(`${base}/health/live`)).status).toBe(200);
    const r = await flood;
    expect(r.closedByNode).toBe(true);
    const answered = r.text.split('HTTP/1.1 200 OK').length - 1;
    expect(answered).toBeLessThanOrEqual(HTTP_PIPELINE_MAX);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
    // A few pipelined requests (within the bound) are all answered, in order.
    const few = await raw(port, 'GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(3) + 'GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(few.text.split('HTTP/1.1 200 OK').length - 1).toBe(4);
    expect(few.text.lastIndexOf('"ready":true')).toBeGreaterThan(few.text.lastIndexOf('"live":true'));
  });

  it('/metrics is valid Prometheus text exposition, also for concurrent scrapes, with counters that agree across them', async () => {
    const conn = await TestConnection.connect(cluster.endpoints[0]!);
    try {
      // ok and error outcomes, an unknown op and a rejected request: labelled series appear.
      await conn.call(Op.CACHE_PUT, { cache: 'a "quoted"\\cache', key: encodeKey('k'), value: new Uint8Array([1]), seq: 1, ttlMs: 60_000 });
      await conn.call(Op.CACHE_GET, { cache: 'a', key: encodeKey('k') });
      await conn.request(Op.CACHE_GET, { cache: 'a', key: 'not bytes' });
      await conn.request(77 as Op, {});
      const scrapes = await Promise.all(Array.from({ length: 16 }, () => fetch(`${base}/metrics`).then(async (r) => ({ status: r.status, type: r.headers.get('content-type'), text: await r.text() }))));
      for (const s of scrapes) {
        expect(s.status).toBe(200);
        expect(s.type).toBe('text/plain; version=0.0.4; charset=utf-8');
        const samples = parseExposition(s.text);
        const node = cluster.nodeIds[0]!;
        expect(samples.get(`gridlink_node_ops_total{op="CACHE_PUT",outcome="ok",node="${node}"}`)).toBe(1);
        expect(samples.get(`gridlink_node_ops_total{op="CACHE_GET",outcome="error",node="${node}"}`)).toBe(1);
        expect(samples.get(`gridlink_node_ops_total{op="op 77",outcome="error",node="${node}"}`)).toBe(1);
        expect(samples.get(`gridlink_node_rejected_requests_total{code="GRID_BAD_REQUEST",node="${node}"}`)).toBe(1);
      }
    } finally {
      conn.close();
    }
  });
});
