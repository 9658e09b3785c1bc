import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { GridClient } from '@gridlink/client';
import { LocalCluster, TOPOLOGY_KEY } from '@gridlink/node';
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

  it('serves only its own paths, read-only', async () => {
    expect((await fetch(new URL('/nope', dashboard.url))).status).toBe(404);
    expect((await fetch(dashboard.url, { method: 'POST' })).status).toBe(405);
    const api = (await (await fetch(new URL('/api/topology', dashboard.url))).json()) as { partitions: number };
    expect(api.partitions).toBe(128);
  });
});
