/**
 * ADR 0056: while state transfers remain, the lease reports newly synced partitions in bulk (at
 * most every SYNCED_REPORT_MS), so a node pulling tens of thousands of partitions does not make
 * the coordinator write a topology version per handful of them; the last pull reports at once.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryControlPlane, resolveNodeOptions, silentLogger } from '@gridlink/node';
import { Lifecycle } from '../src/lifecycle.js';
import { OwnLease, SYNCED_REPORT_MS } from '../src/membership/lease.js';
import { Scheduler } from '../src/scheduler.js';

describe('the lease reports synced partitions in bulk while pulls remain', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('holds new entries back while pulling, reports them after SYNCED_REPORT_MS, and all at once when pulls end', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const kv = new MemoryControlPlane();
    const opts = resolveNodeOptions({ id: 'n1', controlPlane: kv, partitions: 8, backups: 1 });
    const life = new Lifecycle();
    life.state = 'running';
    let pulling = true;
    const lease = new OwnLease({
      id: 'n1',
      opts,
      kv,
      scheduler: new Scheduler(),
      log: silentLogger,
      life,
      epoch: () => 'e1',
      port: () => 1,
      rejoinCheck: () => Promise.resolve(),
      pullsPending: () => pulling,
    });
    expect(lease.record().synced).toEqual({});
    lease.synced['1'] = 5;
    lease.synced['2'] = 5;
    expect(lease.record().synced).toEqual({});
    vi.advanceTimersByTime(SYNCED_REPORT_MS);
    expect(lease.record().synced).toEqual({ '1': 5, '2': 5 });
    lease.synced['3'] = 6;
    expect(lease.record().synced).toEqual({ '1': 5, '2': 5 });
    pulling = false;
    expect(lease.record().synced).toEqual({ '1': 5, '2': 5, '3': 6 });
    // Nothing pulling: every change is reported as it happens, as before.
    delete lease.synced['1'];
    expect(lease.record().synced).toEqual({ '2': 5, '3': 6 });
    // A new life reports nothing of the old one.
    pulling = true;
    lease.restart();
    expect(lease.record().synced).toEqual({});
  });
});
