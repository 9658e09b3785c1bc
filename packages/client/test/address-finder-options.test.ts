/**
 * The address finders' options are checked when the finder is made, as the client's own are: a
 * wrong value is a GridConfigError naming the option, not a finder that misbehaves later.
 */
import { describe, expect, it } from 'vitest';
import { GridConfigError } from '@gridlink/client';
import { natsAddressFinder } from '@gridlink/client/nats';

const MAX_TIMER_MS = 2 ** 31 - 1;

function fieldOf(make: () => unknown): string {
  try {
    make();
  } catch (e) {
    expect(e).toBeInstanceOf(GridConfigError);
    return (e as GridConfigError).field;
  }
  throw new Error('expected a GridConfigError');
}

describe('natsAddressFinder options', () => {
  it('refuses a timeoutMs or checkIntervalMs longer than a timer can wait (it would fire at once)', async () => {
    expect(fieldOf(() => natsAddressFinder({ servers: 'nats://127.0.0.1:1', timeoutMs: MAX_TIMER_MS + 1 }))).toBe('timeoutMs');
    expect(fieldOf(() => natsAddressFinder({ servers: 'nats://127.0.0.1:1', checkIntervalMs: MAX_TIMER_MS + 1 }))).toBe('checkIntervalMs');
    const longest = natsAddressFinder({ servers: 'nats://127.0.0.1:1', timeoutMs: MAX_TIMER_MS, checkIntervalMs: MAX_TIMER_MS });
    await longest.close();
  });
});
