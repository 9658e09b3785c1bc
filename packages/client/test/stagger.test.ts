import { describe, expect, it } from 'vitest';
import { RaceFailure, staggeredRace } from '@gridlink/client/internal';

/** An attempt that settles only when the test says so. */
function controllable() {
  const started: number[] = [];
  const settle = new Map<number, { ok: (v: string) => void; fail: (e: Error) => void }>();
  const waiters: (() => void)[] = [];
  const attempt = (i: number, signal: AbortSignal): Promise<string> =>
    new Promise<string>((ok, fail) => {
      started.push(i);
      settle.set(i, { ok, fail });
      signal.addEventListener('abort', () => fail(new Error('aborted')));
      for (const w of waiters.splice(0)) w();
    });
  const waitStarted = async (n: number): Promise<void> => {
    while (started.length < n) await new Promise<void>((r) => waiters.push(r));
  };
  return { started, settle, attempt, waitStarted };
}

describe('staggered first connection', () => {
  it('starts endpoints in order, the next after the stagger while earlier ones hang', async () => {
    const c = controllable();
    const race = staggeredRace({ count: 3, stagger: 20, timeout: 10_000, attempt: c.attempt });
    await c.waitStarted(3);
    expect(c.started).toEqual([0, 1, 2]);
    c.settle.get(2)!.ok('third');
    await expect(race).resolves.toEqual({ winner: 'third', index: 2 });
  });

  it('a failure starts the next endpoint at once (no stagger wait)', async () => {
    const c = controllable();
    // A huge stagger: only failures can advance the race before the timeout.
    const race = staggeredRace({ count: 3, stagger: 60_000, timeout: 30_000, attempt: c.attempt });
    await c.waitStarted(1);
    c.settle.get(0)!.fail(new Error('refused'));
    await c.waitStarted(2);
    c.settle.get(1)!.fail(new Error('reset'));
    await c.waitStarted(3);
    c.settle.get(2)!.ok('ok');
    await expect(race).resolves.toEqual({ winner: 'ok', index: 2 });
  });

  it('the first success wins even if an earlier one is still pending; late successes are reported', async () => {
    const c = controllable();
    const late: number[] = [];
    const race = staggeredRace({ count: 2, stagger: 5, timeout: 10_000, attempt: c.attempt, onLateSuccess: (_v, i) => late.push(i) });
    await c.waitStarted(2);
    c.settle.get(1)!.ok('b');
    await expect(race).resolves.toMatchObject({ index: 1 });
    c.settle.get(0)!.ok('a');
    await Promise.resolve();
    expect(late).toEqual([0]);
  });

  it('fails with each cause when every attempt fails', async () => {
    const c = controllable();
    const race = staggeredRace({ count: 2, stagger: 60_000, timeout: 30_000, attempt: c.attempt });
    await c.waitStarted(1);
    c.settle.get(0)!.fail(new Error('refused'));
    await c.waitStarted(2);
    c.settle.get(1)!.fail(new Error('bad handshake'));
    const err = await race.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RaceFailure);
    expect((err as RaceFailure).causes).toEqual(['refused', 'bad handshake']);
    expect((err as RaceFailure).timedOut).toBe(false);
  });

  it('times out listing untried endpoints and aborts running attempts', async () => {
    const c = controllable();
    const race = staggeredRace({ count: 3, stagger: 60_000, timeout: 30, attempt: c.attempt });
    const err = (await race.catch((e: unknown) => e)) as RaceFailure;
    expect(err.timedOut).toBe(true);
    expect(err.causes[0]).toBe('no answer yet');
    expect(err.causes[1]).toMatch(/not tried/);
    expect(err.causes[2]).toMatch(/not tried/);
  });
});
