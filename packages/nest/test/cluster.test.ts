/**
 * Three Nest app processes behind a round-robin, one embedded grid: 200 identical POSTs fired at
 * once run the handler exactly once; the rest get 409 or the replay.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { scopedKeyHash } from '@gridlink/dedupe';
import { post, waitFor } from '../../express/test/helpers.js';
import { startApp, stopApp, type AppProcess } from '../../express/test/processes.js';

const APP = fileURLToPath(new URL('./fixtures/app.ts', import.meta.url));

let cluster: LocalCluster;
let apps: AppProcess[] = [];
let dir: string;
let ledger: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gridlink-nest-'));
  ledger = join(dir, 'ledger.jsonl');
  writeFileSync(ledger, '');
  cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 64 });
  const env = { GRID_ENDPOINTS: cluster.endpoints.join(','), LEDGER: ledger, WORK_MS: '150' };
  apps = await Promise.all([0, 1, 2].map(() => startApp(APP, env)));
});

afterAll(async () => {
  await Promise.all(apps.map((a) => stopApp(a)));
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('three Nest app instances behind a round-robin', () => {
  it('200 identical POSTs fired at once run the handler exactly once; the rest get 409 or the replay', async () => {
    const key = `nest-burst-${Date.now()}`;
    let rr = 0;
    const replies = await Promise.all(
      Array.from({ length: 200 }, () => post(apps[rr++ % apps.length]!.base, '/orders', { order: 'n-1' }, { 'idempotency-key': key })),
    );
    const statuses = replies.map((r) => (r.status === 201 && r.headers.get('idempotent-replayed') === 'true' ? 'replayed' : String(r.status)));
    expect(statuses.filter((s) => s !== 'replayed' && s !== '409' && s !== '201')).toEqual([]);
    expect(statuses.filter((s) => s === '201')).toHaveLength(1);
    const hash = scopedKeyHash({ method: 'POST', route: '/orders', tenant: undefined }, 'h', key);
    const runs = readFileSync(ledger, 'utf8').split('\n').filter((l) => l.includes(hash));
    expect(runs).toHaveLength(1);
  });

  it('SIGTERM with enableShutdownHooks: the request in flight is answered and stored before the client closes; a retry elsewhere gets the replay', async () => {
    const key = `nest-sigterm-${Date.now()}`;
    const hash = scopedKeyHash({ method: 'POST', route: '/orders', tenant: undefined }, 'h', key);
    const victim = apps[0]!;
    const first = post(victim.base, '/orders', { order: 'n-2' }, { 'idempotency-key': key });
    // Its handler runs (WORK_MS) when the ledger has its line; then the process is told to stop.
    await waitFor(() => readFileSync(ledger, 'utf8').includes(hash), 5000, 'the handler to start');
    process.kill(victim.child.pid!, 'SIGTERM');
    const answer = await first;
    expect(answer.status).toBe(201);
    await victim.exited;
    expect(victim.child.exitCode !== null || victim.child.signalCode === 'SIGTERM').toBe(true);
    const retry = await post(apps[1]!.base, '/orders', { order: 'n-2' }, { 'idempotency-key': key });
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.body.equals(answer.body)).toBe(true);
    expect(readFileSync(ledger, 'utf8').split('\n').filter((l) => l.includes(hash))).toHaveLength(1);
  });
});
