/**
 * The address finders' options are checked when the finder is made, as the client's own are: a
 * wrong value is a GridConfigError naming the option, not a finder that misbehaves later.
 */
import { describe, expect, it } from 'vitest';
import { GridConfigError, dnsAddressFinder, staticAddressFinder } from '@gridlink/client';
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

describe('dnsAddressFinder options', () => {
  const resolver = { resolve4: async () => ['10.0.0.1'], resolve6: async () => [] as string[] };

  it('refuses a bad name, port, family or resolver naming it', () => {
    expect(fieldOf(() => dnsAddressFinder('', { resolver }))).toBe('name');
    expect(fieldOf(() => dnsAddressFinder(7 as unknown as string))).toBe('name');
    // Each of these made addresses the client then skipped as unparsable: it never connected.
    expect(fieldOf(() => dnsAddressFinder('svc', { port: 0, resolver }))).toBe('port');
    expect(fieldOf(() => dnsAddressFinder('svc', { port: 65536, resolver }))).toBe('port');
    expect(fieldOf(() => dnsAddressFinder('svc', { port: '10800' as unknown as number, resolver }))).toBe('port');
    // Asked for both families instead of the one meant.
    expect(fieldOf(() => dnsAddressFinder('svc', { family: '4' as unknown as 4, resolver }))).toBe('family');
    expect(fieldOf(() => dnsAddressFinder('svc', { resolver: { resolve4: resolver.resolve4 } as unknown as typeof resolver }))).toBe('resolver');
  });

  it('takes null options as the defaults and a valid port', async () => {
    expect(() => dnsAddressFinder('svc', null)).not.toThrow();
    expect(await dnsAddressFinder('svc', { port: 65535, family: 4, resolver }).resolve()).toEqual(['10.0.0.1:65535']);
  });
});

describe('staticAddressFinder', () => {
  it('refuses what the client would refuse in endpoints, naming the entry', () => {
    // It was taken, then skipped at every resolution.
    expect(fieldOf(() => staticAddressFinder(['a:10800', 'b:99999']))).toBe('endpoints[1]');
    expect(fieldOf(() => staticAddressFinder(['a', 5 as unknown as string]))).toBe('endpoints[1]');
    // A string was spread into its characters.
    expect(fieldOf(() => staticAddressFinder('a:10800' as unknown as string[]))).toBe('endpoints');
  });

  it('answers the list it was given', async () => {
    expect(await staticAddressFinder(['a', '[::1]:1', 'b:2..3']).resolve()).toEqual(['a', '[::1]:1', 'b:2..3']);
  });
});
