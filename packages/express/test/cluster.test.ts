/**
 * Three Express app processes behind a round-robin, one embedded grid: identical POSTs fired at
 * once run the handler exactly once (also while a grid node is killed mid-burst), and a key held
 * by an app process that is SIGKILLed frees itself after the lease, with a larger fencing token.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '@gridlink/affinity';
import { LocalCluster } from '@gridlink/node';
import { scopedKeyHash } from '@gridlink/dedupe';
import { post, waitFor, type Reply } from './helpers.js';
import { startApp, stopApp, type AppProcess } from './processes.js';

const APP = fileURLToPath(new URL('./fixtures/app.ts', import.meta.url));
const PARTITIONS = 64;

let cluster: LocalCluster;
let apps: AppProcess[] = [];
let dir: string;
let ledger: string;
let rr = 0;

function next(): string {
  const live = apps.filter((a) => a.child.exitCode === null && a.child.signalCode === null);
  return live[rr++ % live.length]!.base;
}

function runsOf(keyHash: string): { pid: number; token: number }[] {
  return readFileSync(ledger, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { pid: number; keyHash: string; token: number })
    .filter((r) => r.keyHash === keyHash);
}

const hashOf = (key: string, route = '/orders'): string => scopedKeyHash({ method: 'POST', route, tenant: undefined }, 'h', key);

function classify(replies: Reply[]): { ran: number; replayed: number; inProgress: number; other: number[] } {
  const out = { ran: 0, replayed: 0, inProgress: 0, other: [] as number[] };
  for (const r of replies) {
    if (r.status === 201 && r.headers.get('idempotent-replayed') === 'true') out.replayed++;
    else if (r.status === 201) out.ran++;
    else if (r.status === 409) out.inProgress++;
    else out.other.push(r.status);
  }
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gridlink-api-'));
  ledger = join(dir, 'ledger.jsonl');
  writeFileSync(ledger, '');
  cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: PARTITIONS });
  const env = { GRID_ENDPOINTS: cluster.endpoints.join(','), LEDGER: ledger, LEASE_MS: '1500', WORK_MS: '150' };
  apps = await Promise.all([0, 1, 2].map(() => startApp(APP, env)));
});

afterAll(async () => {
  await Promise.all(apps.map((a) => stopApp(a)));
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('three app instances behind a round-robin', () => {
  it('200 identical POSTs fired at once run the handler exactly once; the rest get 409 or the replay', async () => {
    const key = `burst-${Date.now()}`;
    const replies = await Promise.all(Array.from({ length: 200 }, () => post(next(), '/orders', { order: 'o-1' }, { 'idempotency-key': key })));
    const c = classify(replies);
    expect(c.other).toEqual([]);
    expect(c.ran).toBe(1);
    expect(c.ran + c.replayed + c.inProgress).toBe(200);
    expect(runsOf(hashOf(key))).toHaveLength(1);
  });

  it('still exactly once, and no 5xx, while the grid node owning the key is killed mid-burst', async () => {
    const key = `burst-kill-${Date.now()}`;
    const hash = hashOf(key);
    const owner = cluster.primaryOf(partitionOf(`dedupe:gridlink-idempotency:${hash}`, PARTITIONS));
    expect(owner).not.toBeNull();
    const fire = (n: number): Promise<Reply>[] => Array.from({ length: n }, () => post(next(), '/orders', { order: 'o-2' }, { 'idempotency-key': key }));
    const first = fire(100);
    await waitFor(() => runsOf(hash).length > 0, 10_000, 'the handler to start');
    await cluster.kill(owner!);
    const second = fire(100);
    const replies = await Promise.all([...first, ...second]);
    const c = classify(replies);
    expect(c.other).toEqual([]);
    expect(runsOf(hash)).toHaveLength(1);
    expect(c.ran).toBe(1);
  });

  it('a key held by an app process killed with SIGKILL frees itself after the lease; the retry runs once with a larger fencing token', async () => {
    const key = `sigkill-${Date.now()}`;
    const hash = hashOf(key, '/short-lease');
    const victim = apps[2]!;
    const survivor = apps[0]!.base;
    // The victim's handler starts and never answers.
    void post(victim.base, '/short-lease', { order: 'o-3' }, { 'idempotency-key': key, 'x-test-hang': '1' }).catch(() => undefined);
    await waitFor(() => runsOf(hash).length === 1, 10_000, 'the victim to hold the key');
    const [held] = runsOf(hash);
    expect(held!.pid).toBe(victim.child.pid);
    expect((await post(survivor, '/short-lease', { order: 'o-3' }, { 'idempotency-key': key })).status).toBe(409);
    await stopApp(victim, 'SIGKILL');
    let done: Reply | undefined;
    await waitFor(async () => {
      const r = await post(survivor, '/short-lease', { order: 'o-3' }, { 'idempotency-key': key });
      expect([201, 409]).toContain(r.status);
      if (r.status === 201) done = r;
      return done !== undefined;
    }, 15_000, 'the retry to succeed after the lease');
    expect(done!.headers.get('idempotent-replayed')).toBeNull();
    const runs = runsOf(hash);
    expect(runs).toHaveLength(2);
    expect(runs[1]!.token).toBeGreaterThan(held!.token);
    expect((JSON.parse(done!.body.toString()) as { token: number }).token).toBe(runs[1]!.token);
  });
});
