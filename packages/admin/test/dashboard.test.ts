import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { GridClient } from '@gridlink/client';
import { LEASE_PREFIX, LocalCluster, MemoryControlPlane, TOPOLOGY_KEY, type TopologyRecord } from '@gridlink/node';
import { RELEASE } from '@gridlink/node/internal';
import { startDashboard, topologyView, type Dashboard, type HttpLocator } from '@gridlink/admin';

// The browser globals the page functions below use (tests compile without the DOM lib).
interface PageElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageElement | null;
}
declare const document: { querySelector(s: string): PageElement | null; querySelectorAll(s: string): Iterable<PageElement> & ArrayLike<PageElement> };
declare const window: Record<string, unknown>;

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];

describe('dashboard in a real browser', () => {
  let cluster: LocalCluster;
  let dashboard: Dashboard;
  let browser: Browser | undefined;
  let client: GridClient;
  let page: Page;
  let load: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 3, partitions: 128, backups: 1, http: true, autoAdjust: { enabled: false }, zones: ['zone-a', 'zone-b', 'zone-c'] });
    const http: HttpLocator = (id) => {
      try {
        const p = cluster.node(id).httpPort;
        return p === undefined ? undefined : `http://127.0.0.1:${p}`;
      } catch {
        return undefined;
      }
    };
    dashboard = await startDashboard({ controlPlane: cluster.controlPlane, http, port: 0, scrapeIntervalMs: 200 });
    client = await GridClient.connect({ endpoints: cluster.endpoints });
    const cache = client.cache<string, number>('demo');
    let i = 0;
    // A trickle of traffic so ops/s is not zero; errors are not expected.
    load = setInterval(() => {
      for (let k = 0; k < 20; k++) void cache.put(`k${i++ % 500}`, i).catch(() => undefined);
    }, 50);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 90_000 });
    page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  }, 120_000);

  afterAll(async () => {
    clearInterval(load);
    await browser?.close();
    await client?.close();
    await dashboard?.close();
    await cluster?.stop();
  });

  it('shows three members with metrics, then a killed node gone and its partitions moved, without reload', async () => {
    await page.goto(dashboard.url);
    await page.waitForFunction(() => document.querySelectorAll('#members tr[data-alive="true"]').length === 3);
    expect(await page.locator('#grid .cell').count()).toBe(128);
    const owners = await page.$$eval('#grid .cell', (cells) => [...new Set(cells.map((c) => c.getAttribute('data-owner')))].sort());
    expect(owners).toEqual(['node-1', 'node-2', 'node-3']);
    // Live metrics from each node's /metrics and /health/ready.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#members tr[data-alive="true"]')].every(
        (tr) => tr.querySelector('.ready')?.textContent === 'yes' && Number(tr.querySelector('.ops')?.textContent) > 0,
      ),
    );
    await page.waitForFunction(() => [...document.querySelectorAll('#members td.clients')].some((td) => Number(td.textContent) >= 1));
    // each node's release, from its gridlink_node_build_info (ADR 0060)
    expect(await page.$$eval('#members td.release', (tds) => tds.map((td) => td.textContent))).toEqual([RELEASE, RELEASE, RELEASE]);
    // nobody reports a member unreachable, nobody is fenced (ADR 0065): no banner, no badge
    expect(await page.isHidden('#warnings')).toBe(true);
    expect(await page.locator('#members .warn').count()).toBe(0);
    if (process.env['GRIDLINK_DASHBOARD_SCREENSHOT']) await page.screenshot({ path: process.env['GRIDLINK_DASHBOARD_SCREENSHOT'], fullPage: true });

    await page.evaluate(() => {
      window['notReloaded'] = true;
    });
    const before = Number(await page.getAttribute('body', 'data-version'));
    await cluster.kill('node-2');
    await page.waitForFunction(() => document.querySelector('#members tr[data-member="node-2"]')?.getAttribute('data-alive') === 'false', undefined, { timeout: 15_000 });
    expect(await page.textContent('#members tr[data-member="node-2"] .state')).toBe('gone');
    await page.waitForFunction(() => !document.querySelector('#grid .cell[data-owner="node-2"]') && !document.querySelector('#grid .cell[data-state="m"]'), undefined, { timeout: 15_000 });
    const after = await page.$$eval('#grid .cell', (cells) => [...new Set(cells.map((c) => c.getAttribute('data-owner')))].sort());
    expect(after).toEqual(['node-1', 'node-3']);
    expect(Number(await page.getAttribute('body', 'data-version'))).toBeGreaterThan(before);
    expect(await page.evaluate(() => window['notReloaded'])).toBe(true);
    // The page agrees with the control plane.
    const view = topologyView(cluster.topology());
    expect(view.nodes.find((n) => n.id === 'node-2')?.alive).toBe(false);
  });

  it('keeps showing the last good topology when the record in the control plane cannot be read', async () => {
    await page.goto(dashboard.url);
    await page.waitForFunction(() => document.querySelectorAll('#grid .cell').length === 128);
    const before = Number(await page.getAttribute('body', 'data-version'));
    await cluster.controlPlane.put(TOPOLOGY_KEY, { version: before + 5 });
    // The coordinator writes the last good record over it, one version on; the page follows that
    // one and never showed the bad one (its version would have been before + 5).
    await page.waitForFunction((v) => Number(document.querySelector('body')?.getAttribute('data-version')) > v, before, { timeout: 15_000 });
    expect(Number(await page.getAttribute('body', 'data-version'))).toBe(before + 1);
    expect(await page.locator('#grid .cell').count()).toBe(128);
    const api = (await (await fetch(new URL('/api/topology', dashboard.url))).json()) as { partitions: number; version: number };
    expect(api).toMatchObject({ partitions: 128, version: before + 1 });
  });

  it('shows what leases report unreachable and a node asked to stop renewing: a badge on the member, the status lines in a banner (ADR 0065)', async () => {
    // What a cut between two members leaves in the control plane, over this cluster's records (a
    // real cut needs node processes: cli-process.test.ts runs one under gridlink status and the
    // dashboard's /api/topology). Same browser, a second dashboard.
    const t: TopologyRecord = cluster.topology();
    const ids = Object.keys(t.members).sort();
    const [a, b] = [ids[0]!, ids[ids.length - 1]!];
    const epoch = (id: string): string => t.members[id]!.epoch;
    const cp = new MemoryControlPlane();
    const lease = (id: string, e: string, extra: Record<string, unknown> = {}) => cp.put(LEASE_PREFIX + id, { id, epoch: e, host: '127.0.0.1', port: 1, synced: {}, ...extra });
    await cp.put(TOPOLOGY_KEY, { ...t, fenced: { [b]: epoch(b) } });
    await lease(a, epoch(a), { unreachable: [b] });
    await lease(b, epoch(b), { unreachable: [a, 7, a] });
    const second = await startDashboard({ controlPlane: cp, port: 0, scrapeIntervalMs: 100 });
    try {
      await page.goto(second.url);
      await page.waitForFunction(() => document.querySelectorAll('#warnings div').length === 2);
      expect(await page.$$eval('#warnings div', (ds) => ds.map((d) => d.textContent))).toEqual([
        `unreachable: ${a} cannot reach ${b}; ${b} cannot reach ${a}`,
        `fenced: ${b} (epoch ${epoch(b).slice(0, 8)}) asked to stop renewing: still a member until its lease runs out`,
      ]);
      expect(await page.textContent(`#members tr[data-member="${a}"] .warn.unreachable`)).toBe(`cannot reach ${b}`);
      expect(await page.textContent(`#members tr[data-member="${b}"] .warn.unreachable`)).toBe(`cannot reach ${a}`);
      expect(await page.textContent(`#members tr[data-member="${b}"] .warn.fenced`)).toBe('asked to stop renewing');
      expect(await page.locator(`#members tr[data-member="${a}"] .warn.fenced`).count()).toBe(0);
      expect(await page.locator('#members .warn.leaving').count()).toBe(0);

      // It is declared gone; its next life renews, reporting the other unreachable, and is held back.
      const { [b]: _gone, ...members } = t.members;
      await cp.put(TOPOLOGY_KEY, { ...t, version: t.version + 1, members, fenced: { [b]: epoch(b) } });
      await lease(a, epoch(a));
      let renewals = 0;
      const renew = setInterval(() => void lease(b, 'next-life-epoch', { unreachable: [a], n: renewals++ }), 50);
      try {
        await page.waitForFunction((id) => document.querySelector(`#members tr[data-member="${id}"]`)?.getAttribute('data-fence') === 'held-back', b, { timeout: 10_000 });
      } finally {
        clearInterval(renew);
      }
      expect(await page.textContent(`#members tr[data-member="${b}"] .warn.fenced`)).toBe('fenced: next life held back');
      expect(await page.getAttribute(`#members tr[data-member="${b}"]`, 'data-alive')).toBe('false');
      const warnings = await page.$$eval('#warnings div', (ds) => ds.map((d) => d.textContent));
      expect(warnings[warnings.length - 1]).toBe(`fenced: ${b} (epoch ${epoch(b).slice(0, 8)}) asked to stop renewing: gone; its next life (epoch next-lif) held back until it reaches every member`);
      const api = (await (await fetch(new URL('/api/topology', second.url))).json()) as { fenced: unknown };
      expect(api.fenced).toEqual([{ id: b, epoch: epoch(b), state: 'held-back', nextEpoch: 'next-life-epoch' }]);

      // A member stopping gracefully (ADR 0067): the record's entry says leaving; a badge says so.
      await cp.put(TOPOLOGY_KEY, { ...t, version: t.version + 2, members: { ...members, [a]: { ...t.members[a]!, leaving: true } } });
      await page.waitForFunction((id) => document.querySelector(`#members tr[data-member="${id}"]`)?.getAttribute('data-leaving') === 'true', a, { timeout: 10_000 });
      expect(await page.textContent(`#members tr[data-member="${a}"] .warn.leaving`)).toBe('leaving');
      expect(await page.locator('#members .warn.leaving').count()).toBe(1);
    } finally {
      await second.close();
    }
  });

  it('serves only its own paths, read-only', async () => {
    expect((await fetch(new URL('/nope', dashboard.url))).status).toBe(404);
    expect((await fetch(dashboard.url, { method: 'POST' })).status).toBe(405);
    const api = (await (await fetch(new URL('/api/topology', dashboard.url))).json()) as { partitions: number };
    expect(api.partitions).toBe(128);
  });
});
