import { describe, expect, it } from 'vitest';
import { DEFAULTS, GridConfigError, resolveConfig } from '@gridlink/client';

function fieldOf(input: unknown): string {
  try {
    resolveConfig(input);
  } catch (e) {
    expect(e).toBeInstanceOf(GridConfigError);
    const err = e as GridConfigError;
    expect(err.code).toBe('GRID_CONFIG');
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(`invalid config "${err.field}": ${err.reason}`);
    expect(err.reason).not.toBe('');
    return err.field;
  }
  throw new Error('expected a GridConfigError');
}

describe('config validation', () => {
  it('fills documented defaults', () => {
    const c = resolveConfig({ endpoints: ['a'] });
    expect(c.endpoints).toEqual([{ host: 'a', port: 10800 }]);
    expect(c.connectTimeout).toBe(DEFAULTS.connectTimeout);
    expect(c.connectStagger).toBe(DEFAULTS.connectStagger);
    expect(c.heartbeatInterval).toBe(DEFAULTS.heartbeatInterval);
    expect(c.heartbeatTimeout).toBe(DEFAULTS.heartbeatTimeout);
    expect(c.operationTimeout).toBe(DEFAULTS.operationTimeout);
    expect(c.requestTimeout).toBe(DEFAULTS.requestTimeout);
    expect(c.reResolveInterval).toBe(DEFAULTS.reResolveInterval);
    expect(c.retry).toEqual(DEFAULTS.retry);
    expect(c.reconnect).toEqual(DEFAULTS.reconnect);
    expect(c.partitionAware).toBe(true);
    expect(c.name).toBe(DEFAULTS.name);
    expect(c.tls).toBeUndefined();
    expect(c.logger).toBeUndefined();
  });

  it('names the offending field', () => {
    const ok = { endpoints: ['a'] };
    expect(fieldOf(null)).toBe('config');
    expect(fieldOf({})).toBe('endpoints');
    expect(fieldOf({ endpoints: 'a' })).toBe('endpoints');
    expect(fieldOf({ endpoints: ['a', 7] })).toBe('endpoints[1]');
    expect(fieldOf({ endpoints: ['a', 'b:0'] })).toBe('endpoints[1]');
    expect(fieldOf({ ...ok, bogus: 1 })).toBe('bogus');
    expect(fieldOf({ ...ok, addressFinder: {} })).toBe('addressFinder');
    expect(fieldOf({ ...ok, reResolveInterval: -1 })).toBe('reResolveInterval');
    expect(fieldOf({ ...ok, connectTimeout: 0 })).toBe('connectTimeout');
    expect(fieldOf({ ...ok, connectTimeout: '5' })).toBe('connectTimeout');
    expect(fieldOf({ ...ok, connectStagger: 1.5 })).toBe('connectStagger');
    expect(fieldOf({ ...ok, heartbeatInterval: NaN })).toBe('heartbeatInterval');
    expect(fieldOf({ ...ok, heartbeatInterval: 100, heartbeatTimeout: 100 })).toBe('heartbeatTimeout');
    expect(fieldOf({ ...ok, operationTimeout: -5 })).toBe('operationTimeout');
    expect(fieldOf({ ...ok, operationTimeout: 100, requestTimeout: 200 })).toBe('requestTimeout');
    expect(fieldOf({ ...ok, retry: true })).toBe('retry');
    expect(fieldOf({ ...ok, retry: { retries: -1 } })).toBe('retry.retries');
    expect(fieldOf({ ...ok, retry: { minDelay: 10, maxDelay: 5 } })).toBe('retry.maxDelay');
    expect(fieldOf({ ...ok, retry: { factor: 0.5 } })).toBe('retry.factor');
    expect(fieldOf({ ...ok, retry: { jitter: 1 } })).toBe('retry.jitter');
    expect(fieldOf({ ...ok, retry: { tries: 1 } })).toBe('retry.tries');
    expect(fieldOf({ ...ok, reconnect: { jitter: 2 } })).toBe('reconnect.jitter');
    expect(fieldOf({ ...ok, reconnect: 5 })).toBe('reconnect');
    expect(fieldOf({ ...ok, partitionAware: 'yes' })).toBe('partitionAware');
    expect(fieldOf({ ...ok, tls: 'on' })).toBe('tls');
    expect(fieldOf({ ...ok, auth: { token: '' } })).toBe('auth.token');
    // Whitespace around a token (a secret's final newline): nodes refuse such a token at start-up.
    for (const token of ['secret\n', ' secret', 'secret\r\n', '\tsecret ']) expect(fieldOf({ ...ok, auth: { token } })).toBe('auth.token');
    expect(resolveConfig({ ...ok, auth: { token: 'se cret' } }).auth).toEqual({ token: 'se cret' });
    expect(fieldOf({ ...ok, logger: { info: 1 } })).toBe('logger.info');
    // null passed the object check and then threw a TypeError reading its methods.
    expect(fieldOf({ ...ok, logger: null })).toBe('logger');
    expect(fieldOf({ ...ok, logger: 'console' })).toBe('logger');
    expect(fieldOf({ ...ok, logger: [] })).toBe('logger');
    expect(fieldOf({ ...ok, name: '' })).toBe('name');
    expect(fieldOf({ ...ok, clusterId: 5 })).toBe('clusterId');
  });

  it('accepts retry: false and an address finder without endpoints', () => {
    const c = resolveConfig({ addressFinder: { resolve: async () => ['x:1'] }, retry: false, tls: true });
    expect(c.retry).toBe(false);
    expect(c.endpoints).toEqual([]);
    expect(c.tls).toEqual({});
  });
});
