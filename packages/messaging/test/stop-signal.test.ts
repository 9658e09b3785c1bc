/**
 * StopSignal: a loop's stop awaited beside each step. It answers like
 * `Promise.race([step, stopped])`, and — unlike that race run once per message against one
 * long-lived promise — keeps nothing of the steps it has seen.
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { StopSignal, STOPPED } from '../src/stop-signal.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** How many of `n` step results, each awaited through `wait`, are still alive after a full collection. */
async function retained(n: number, wait: (step: Promise<object>) => Promise<unknown>): Promise<number> {
  const refs: WeakRef<object>[] = [];
  for (let i = 0; i < n; i++) {
    const value = { i };
    refs.push(new WeakRef(value));
    await wait(Promise.resolve(value));
  }
  await new Promise((r) => setTimeout(r, 0));
  gc();
  await new Promise((r) => setTimeout(r, 0));
  gc();
  return refs.filter((r) => r.deref() !== undefined).length;
}

describe('StopSignal', () => {
  it('keeps nothing of the steps it waited on (a race against a long-lived promise keeps them all)', async () => {
    const signal = new StopSignal();
    expect(await retained(2000, (p) => signal.until(p))).toBeLessThan(10);
    // The pattern it replaces, for comparison: every step's result stays reachable from `stopped`.
    let stop!: () => void;
    const stopped = new Promise<typeof STOPPED>((r) => (stop = () => r(STOPPED)));
    expect(await retained(2000, (p) => Promise.race([p, stopped]))).toBeGreaterThan(1990);
    stop();
  });

  it('answers the step, or STOPPED once stopped — also when stopped before the wait', async () => {
    const signal = new StopSignal();
    expect(await signal.until(Promise.resolve(7))).toBe(7);
    await expect(signal.until(Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    let release!: (v: number) => void;
    const slow = signal.until(new Promise<number>((r) => (release = r)));
    signal.stop();
    expect(await slow).toBe(STOPPED);
    release(1); // a step settling after the stop changes nothing
    expect(await slow).toBe(STOPPED);
    expect(signal.isStopped).toBe(true);
    expect(await signal.until(new Promise(() => {}))).toBe(STOPPED);
  });
});
