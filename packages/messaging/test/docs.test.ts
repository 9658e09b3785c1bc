/**
 * docs/messaging.md's option tables against the code (real grid and nats-server): every option
 * the package knows is documented and every documented one is known, and each documented integer
 * range is the one enforced (its bounds accepted, one beyond refused with a MessagingConfigError
 * naming the field).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { IdempotentConsumer, JobQueue, MessagingConfigError } from '@gridlink/messaging';
import { messagingEnv } from './helpers/env.js';

interface Row {
  names: string[];
  allowed: string;
}

const doc = readFileSync(new URL('../../../docs/messaging.md', import.meta.url), 'utf8');

/** The table whose rows name `marker`. */
function table(marker: string): Row[] {
  const tables = doc.split(/\n\n/).filter((b) => b.startsWith('| option | default | allowed | meaning |'));
  const found = tables.find((t) => t.includes(`| \`${marker}\` |`));
  if (found === undefined) throw new Error(`no options table with ${marker}`);
  return found
    .split('\n')
    .slice(2)
    .map((line) => {
      const cells = line.split(' | ');
      return { names: [...(cells[0] as string).matchAll(/`(\w+)`/g)].map((m) => m[1] as string), allowed: cells[2] as string };
    });
}

/** A known-option list of the source (`const NAME = [...]`). */
function known(file: string, constant: string): string[] {
  const src = readFileSync(new URL(`../src/${file}`, import.meta.url), 'utf8');
  const m = new RegExp(`const ${constant} = \\[([^\\]]+)\\]`).exec(src);
  if (m === null) throw new Error(`${constant} not found in ${file}`);
  return [...(m[1] as string).matchAll(/'(\w+)'/g)].map((x) => x[1] as string);
}

/** Integer ranges of a table: `[field, min, max]`, nested ones (`direct`, `retry`) as `parent.field`. */
function ranges(rows: Row[]): [string, number, number][] {
  const out: [string, number, number][] = [];
  for (const r of rows) {
    const name = r.names[0] as string;
    const range = /^(\d+)–(\d+)(?: \(.*\))?$/.exec(r.allowed);
    if (range !== null) out.push([name, Number(range[1]), Number(range[2])]);
    const atLeast = /^≥ (\d+)$/.exec(r.allowed);
    if (atLeast !== null) out.push([name, Number(atLeast[1]), Number.MAX_SAFE_INTEGER]);
    for (const m of r.allowed.matchAll(/`(\w+)` (\d+)–(\d+)/g)) out.push([`${name}.${m[1] as string}`, Number(m[2]), Number(m[3])]);
    for (const m of r.allowed.matchAll(/`(\w+)` ≥ (\d+)/g)) out.push([`${name}.${m[1] as string}`, Number(m[2]), Number.MAX_SAFE_INTEGER]);
  }
  return out;
}

function refusal(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof MessagingConfigError) return e.field;
    throw e;
  }
}

const nested = (field: string, v: unknown): Record<string, unknown> => {
  const [a, b] = field.split('.') as [string, string | undefined];
  return b === undefined ? { [a]: v } : { [a]: { [b]: v } };
};

function checkRanges(rows: Row[], make: (opts: Record<string, unknown>) => unknown, expected: string[]): void {
  const found = ranges(rows);
  expect(found.map(([f]) => f)).toEqual(expect.arrayContaining(expected));
  for (const [field, min, max] of found) {
    expect([field, refusal(() => make(nested(field, min)))]).toEqual([field, undefined]);
    expect([field, refusal(() => make(nested(field, max)))]).toEqual([field, undefined]);
    expect([field, refusal(() => make(nested(field, min - 1)))]).toEqual([field, field]);
    if (max < Number.MAX_SAFE_INTEGER) expect([field, refusal(() => make(nested(field, max + 1)))]).toEqual([field, field]);
  }
}

describe('docs/messaging.md option tables (real grid and nats-server)', () => {
  const env = messagingEnv();

  it('JobQueue: the documented options are the known ones, with the documented ranges', async () => {
    const grid = await env.grid();
    const nats = await env.natsConn();
    const rows = table('maxPayloadBytes');
    expect(rows.flatMap((r) => r.names).sort()).toEqual(known('jobs.ts', 'QUEUE_OPTIONS').sort());
    const make = (o: Record<string, unknown>): JobQueue => new JobQueue({ grid, nats, ...o });
    checkRanges(rows, make, ['maxPayloadBytes', 'maxAttempts', 'maxLostRuns', 'jobTimeoutMs', 'retainFinishedMs']);
    expect(refusal(() => make({ queue: 'a'.repeat(64) }))).toBeUndefined();
    expect(refusal(() => make({ queue: 'a'.repeat(65) }))).toBe('queue');
    expect(refusal(() => make({ queu: 'x' }))).toBe('queu');
  });

  it('a job at the documented maxPayloadBytes bound (payload, checkpoint and result each that large) is claimed, checkpointed and completed', async () => {
    const range = /^(\d+)–(\d+)/.exec(table('maxPayloadBytes').find((r) => r.names[0] === 'maxPayloadBytes')?.allowed ?? '');
    const max = Number(range?.[2]);
    expect(max).toBeGreaterThan(65536);
    const q = env.closeAfter(new JobQueue({ grid: await env.grid(), nats: await env.natsConn(), queue: 'docsmax', maxPayloadBytes: max }));
    // A string of n characters encodes as n + 5 bytes (MessagePack str32): exactly the bound.
    const big = (c: string): string => c.repeat(max - 5);
    const errors: unknown[] = [];
    const w = env.closeAfter(
      q.worker(async (ctx) => {
        await ctx.checkpoint(big('c'));
        return big('r');
      }),
    );
    w.on('error', (e) => errors.push(e));
    await w.start();
    await q.submit('at-the-bound', big('p'));
    const result = await q.result<string>('at-the-bound', { waitMs: 20_000 }).catch((e: unknown) => e);
    expect([typeof result === 'string' ? result.length : String(result), errors.map(String)]).toEqual([max - 5, []]);
  }, 30_000);

  it('worker: the documented options are the known ones, with the documented ranges', async () => {
    const q = new JobQueue({ grid: await env.grid(), nats: await env.natsConn() });
    const rows = table('leaseMarginMs');
    expect(rows.flatMap((r) => r.names).sort()).toEqual(known('jobs.ts', 'WORKER_OPTIONS').sort());
    const retry = rows.find((r) => r.names[0] === 'retry')?.allowed ?? '';
    expect([...retry.matchAll(/`(\w+)`/g)].map((m) => m[1]).sort()).toEqual(known('jobs.ts', 'RETRY_OPTIONS').sort());
    const make = (o: Record<string, unknown>): unknown => q.worker(() => undefined, o);
    checkRanges(rows, make, ['concurrency', 'leaseMs', 'sweepIntervalMs', 'closeTimeoutMs', 'retry.initialDelayMs', 'retry.maxDelayMs', 'retry.factor']);
    // leaseMarginMs: 0 to leaseMs / 2
    expect(refusal(() => make({ leaseMs: 1000, leaseMarginMs: 500 }))).toBeUndefined();
    expect(refusal(() => make({ leaseMs: 1000, leaseMarginMs: 501 }))).toBe('leaseMarginMs');
    expect(refusal(() => make({ workerId: 'w'.repeat(65) }))).toBe('workerId');
    await q.close();
  });

  it('IdempotentConsumer: the documented options are the known ones, with the documented ranges', async () => {
    const grid = await env.grid();
    const rows = table('lockLeaseMs');
    expect(rows.flatMap((r) => r.names).sort()).toEqual(known('idempotent.ts', 'OPTION_NAMES').sort());
    const make = (o: Record<string, unknown>): IdempotentConsumer => new IdempotentConsumer({ grid, ...o });
    checkRanges(rows, make, ['windowMs', 'lockLeaseMs', 'workingIntervalMs', 'busyDelayMs', 'closeTimeoutMs', 'direct.concurrency', 'direct.maxQueued']);
    expect(refusal(() => make({ direct: { concurency: 1 } }))).toBe('direct.concurency');
  });

  it('windowMs is bounded because the grid refuses a TTL beyond 2^52 ms (a larger window used to fail every mark at run time)', async () => {
    const grid = await env.grid();
    const refused = await grid.cache<string, number>('docs-ttl').put('k', 1, { ttlMs: Number.MAX_SAFE_INTEGER }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(Error);
    expect(String(refused)).toMatch(/ttlMs/);
    expect(refusal(() => new IdempotentConsumer({ grid, windowMs: Number.MAX_SAFE_INTEGER }))).toBe('windowMs');
    await grid.cache<string, number>('docs-ttl').put('k', 1, { ttlMs: 365 * 24 * 3600 * 1000 });
  });
});
