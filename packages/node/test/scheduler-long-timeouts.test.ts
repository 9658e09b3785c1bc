/**
 * The node's Scheduler sets every timer of a node. Node's own setTimeout fires a delay longer
 * than 2^31 - 1 ms after 1 ms; a node timer given one (a deadline from a long lock wait or lease
 * added to a margin, say) must wait the whole delay instead. Fake timers stand for the clock:
 * they fire an over-long delay after 1 ms as Node does (checked first).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Scheduler } from '../src/scheduler.js';

const MAX = 2 ** 31 - 1;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Scheduler.setTimeout beyond 2^31 - 1 ms', () => {
  it('(the clock stands in for Node: a plain setTimeout that long fires at once)', () => {
    let fired = false;
    const t = setTimeout(() => (fired = true), MAX + 1);
    vi.advanceTimersByTime(2);
    expect(fired).toBe(true);
    clearTimeout(t);
  });

  it('fires after the whole delay, not after 1 ms, and not a millisecond early', () => {
    const s = new Scheduler();
    for (const ms of [MAX, MAX + 1, 2 * MAX + 5, 3 * MAX]) {
      let fired = 0;
      s.setTimeout(() => fired++, ms);
      vi.advanceTimersByTime(ms - 1);
      expect(fired, `${ms} ms: fired before its time`).toBe(0);
      expect(s.pendingTimeouts).toBe(1);
      vi.advanceTimersByTime(1);
      expect(fired, `${ms} ms: not fired at its time`).toBe(1);
      expect(s.pendingTimeouts).toBe(0);
    }
  });

  it('a long timeout can still be cancelled, also once it waits in its later steps, and stop() clears it', () => {
    const s = new Scheduler();
    let fired = 0;
    const h = s.setTimeout(() => fired++, 2 * MAX + 5);
    vi.advanceTimersByTime(MAX + 10);
    h.cancel();
    expect(s.pendingTimeouts).toBe(0);
    vi.advanceTimersByTime(2 * MAX);
    expect(fired).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    s.setTimeout(() => fired++, 2 * MAX + 5);
    vi.advanceTimersByTime(MAX + 10);
    s.stop();
    vi.advanceTimersByTime(2 * MAX);
    expect(fired).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
