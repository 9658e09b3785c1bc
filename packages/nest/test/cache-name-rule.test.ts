/**
 * The cache-name rule of the adapters (Nest's `@InjectCache()` and `forFeature()`, the dedupe
 * `cache` option) against the client's own (`GridClient.cache()`, on a client connected to a real
 * grid): the adapters call the client's `isCacheName` (`@gridlink/client/internal`), since they must
 * refuse a name before any client exists. This holds them to the client's answer for any string,
 * lone surrogates and the 255-byte edge included.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient, GridConfigError } from '@gridlink/client';
import { DedupeConfigError, resolveDedupeOptions } from '@gridlink/dedupe';
import { LocalCluster } from '@gridlink/node';
import { GridlinkModule, InjectCache } from '@gridlink/nest';

let cluster: LocalCluster;
let client: GridClient;

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  client = await GridClient.connect({ endpoints: cluster.endpoints });
});

afterAll(async () => {
  await client?.close();
  await cluster?.stop();
});

/** Whether `check` accepts `name`; a refusal must be the error type its side documents. */
function accepts(check: () => unknown, refusal: new (...a: never[]) => Error): boolean {
  try {
    check();
    return true;
  } catch (e) {
    expect(e).toBeInstanceOf(refusal);
    return false;
  }
}

function verdicts(name: unknown): boolean[] {
  return [
    accepts(() => client.cache(name as string), GridConfigError),
    accepts(() => InjectCache(name as string), DedupeConfigError),
    accepts(() => GridlinkModule.forFeature([name as string]), DedupeConfigError),
    name === undefined ? false : accepts(() => resolveDedupeOptions({ cache: name as string }), DedupeConfigError),
  ];
}

describe('cache names: the adapters accept exactly what the client accepts', () => {
  it('at the edges: 255 and 256 bytes of 1-, 2-, 3- and 4-byte characters, lone surrogates, not a string', () => {
    const cases: [unknown, boolean][] = [
      ['', false],
      ['a', true],
      ['a'.repeat(255), true],
      ['a'.repeat(256), false],
      ['é'.repeat(127) + 'a', true],
      ['é'.repeat(128), false],
      ['€'.repeat(85), true],
      ['€'.repeat(85) + 'a', false],
      ['😀'.repeat(63) + 'abc', true],
      ['😀'.repeat(64), false],
      ['\ud800'.repeat(85), true], // a lone surrogate counts as U+FFFD: 3 bytes
      ['\ud800'.repeat(86), false],
      [undefined, false],
      [5, false],
    ];
    for (const [name, ok] of cases) expect([name, verdicts(name)]).toEqual([name, [ok, ok, ok, ok]]);
  });

  it('for any string (property)', () => {
    const unit = fc.constantFrom('a', 'é', '€', '😀', '\ud800', '\udc00');
    fc.assert(
      fc.property(fc.string({ unit, minLength: 60, maxLength: 160 }), (name) => {
        const [clientSays, ...adapters] = verdicts(name);
        expect(adapters).toEqual(adapters.map(() => clientSays));
      }),
      { numRuns: 500 },
    );
  });
});
