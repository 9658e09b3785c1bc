/**
 * The address finders' options are checked when the finder is made, as the client's own are: a
 * wrong value is a GridConfigError naming the option, not a finder that misbehaves later.
 */
import { describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { GridConfigError, dnsAddressFinder, staticAddressFinder } from '@gridlink/client';
import { natsAddressFinder, type NatsAddressFinderOptions } from '@gridlink/client/nats';

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

describe('natsAddressFinder options, checked as the client checks its own', () => {
  const url = 'nats://127.0.0.1:1';
  /** The options as a caller without types (plain JavaScript, JSON config) may pass them. */
  const untyped = (o: Record<string, unknown>): NatsAddressFinderOptions => o;
  /** Something shaped as a NATS connection: the options are checked before it is used. */
  const connection = { request: () => undefined, status: () => undefined, close: async () => undefined } as unknown as NatsConnection;

  it('takes a shared connection without servers (the type too: this file must type-check)', async () => {
    const finder = natsAddressFinder({ connection, bucket: 'b' });
    await finder.close();
    // Still takes servers beside it (ignored), and servers alone.
    await natsAddressFinder({ connection, servers: [] }).close();
    await natsAddressFinder({ servers: url }).close();
  });

  it('refuses an entry of servers that is not a string, naming it as the client names endpoints[i]', () => {
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: [42] })))).toBe('servers[0]');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: [url, null] })))).toBe('servers[1]');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: [url, 'http://x'] })))).toBe('servers[1]');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: 42 })))).toBe('servers');
    expect(fieldOf(() => natsAddressFinder(untyped({})))).toBe('servers');
    // Not used with a connection, but still not a TypeError.
    expect(fieldOf(() => natsAddressFinder(untyped({ connection, servers: [42] })))).toBe('servers[0]');
  });

  it('refuses a token, user, pass, tls or connection of the wrong type, naming it', () => {
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, token: 42 })))).toBe('token');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, token: null })))).toBe('token');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, user: 1, pass: 'p' })))).toBe('user');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, user: 'u', pass: 7 })))).toBe('pass');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, user: 'u' })))).toBe('user');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, tls: 'ca.pem' })))).toBe('tls');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, tls: null })))).toBe('tls');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, tls: { caFile: 5 } })))).toBe('tls.caFile');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, tls: { keyFile: '' } })))).toBe('tls.keyFile');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, tls: { ca: 'pem' } })))).toBe('tls.ca');
    expect(fieldOf(() => natsAddressFinder(untyped({ connection: 'nats://x:1' })))).toBe('connection');
    expect(fieldOf(() => natsAddressFinder(untyped({ connection: null })))).toBe('connection');
    expect(fieldOf(() => natsAddressFinder(untyped({ connection: {} })))).toBe('connection');
  });

  it('refuses an unknown option, naming it', () => {
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, timeout: 100 })))).toBe('timeout');
    expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, bucketName: 'x' })))).toBe('bucketName');
  });

  it('refuses null where a default would have been taken', () => {
    for (const field of ['bucket', 'staleAfterMs', 'timeoutMs', 'checkIntervalMs']) {
      expect(fieldOf(() => natsAddressFinder(untyped({ servers: url, [field]: null })))).toBe(field);
    }
  });

  it('passes checked options on: a well-formed finder is made', async () => {
    const f = natsAddressFinder({ servers: [url], token: 't', tls: { caFile: 'ca.pem' }, bucket: 'b', staleAfterMs: 1, timeoutMs: 1, checkIntervalMs: 1 });
    await f.close();
    const g = natsAddressFinder({ servers: `${url}, nats://127.0.0.1:2`, user: 'u', pass: 'p' });
    await g.close();
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

  it('refuses a null port or family (as the client config refuses null) rather than taking the default', () => {
    expect(fieldOf(() => dnsAddressFinder('svc', { port: null as unknown as number, resolver }))).toBe('port');
    expect(fieldOf(() => dnsAddressFinder('svc', { family: null as unknown as 4, resolver }))).toBe('family');
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
