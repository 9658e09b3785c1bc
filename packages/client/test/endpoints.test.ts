import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EndpointParseError, MAX_PORT_RANGE, formatEndpoint, parseEndpoint, parseEndpoints } from '@gridlink/client';

describe('endpoint parsing', () => {
  it('accepts every documented form', () => {
    expect(parseEndpoint('grid-0')).toEqual([{ host: 'grid-0', port: 10800 }]);
    expect(parseEndpoint('10.0.0.1:9000')).toEqual([{ host: '10.0.0.1', port: 9000 }]);
    expect(parseEndpoint('[::1]:9000')).toEqual([{ host: '::1', port: 9000 }]);
    expect(parseEndpoint('[fe80::1]')).toEqual([{ host: 'fe80::1', port: 10800 }]);
    expect(parseEndpoint('::1')).toEqual([{ host: '::1', port: 10800 }]);
    expect(parseEndpoint('h:10800..10802')).toEqual([
      { host: 'h', port: 10800 },
      { host: 'h', port: 10801 },
      { host: 'h', port: 10802 },
    ]);
    expect(parseEndpoint('[::1]:5..6')).toEqual([
      { host: '::1', port: 5 },
      { host: '::1', port: 6 },
    ]);
  });

  it('rejects malformed endpoints with the input in the message', () => {
    for (const bad of ['', ' ', 'h:', 'h:0', 'h:65536', 'h:abc', 'h:5..3', '[::1', '[::1]x', '[host]:1', ':80', 'h:1..2..3', `h:1..${MAX_PORT_RANGE + 1}`, 'a b:1']) {
      expect(() => parseEndpoint(bad), bad).toThrow(EndpointParseError);
    }
  });

  it('keeps order and drops duplicates across a list', () => {
    expect(parseEndpoints(['b:2', 'a:1', 'b:2', 'a:1..2']).map(formatEndpoint)).toEqual(['b:2', 'a:1', 'a:2']);
  });

  const host = fc.oneof(
    fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
    fc.ipV4(),
    fc.ipV6(),
  );

  it('format then parse is the identity', () => {
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), (h, port) => {
        const ep = { host: h, port };
        expect(parseEndpoint(formatEndpoint(ep))).toEqual([ep]);
      }),
    );
  });

  it('a port range expands to every port in ascending order', () => {
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 50 }), (h, from, span) => {
        const to = Math.min(65535, from + span);
        const text = h.includes(':') ? `[${h}]:${from}..${to}` : `${h}:${from}..${to}`;
        const eps = parseEndpoint(text);
        expect(eps.map((e) => e.port)).toEqual(Array.from({ length: to - from + 1 }, (_, i) => from + i));
        expect(eps.every((e) => e.host === h)).toBe(true);
      }),
    );
  });
});
