/**
 * Timers for a deadline that has already passed. A node computes many delays as `deadline - now`
 * (a backup's replication request, waits bounded by a lease); read again a moment after a check,
 * such a delay can come out negative. Node runs a timer asked for less than 1 ms after 1 ms on
 * every version, but from Node 23 on it also prints, once per process, "TimeoutNegativeWarning:
 * -1 is a negative number" to stderr, which an operator of a grid node would find in its log.
 * The node's Scheduler and the protocol's WireClient therefore hand Node at least 1 ms.
 *
 * On Node 20 and 22 these tests check that such timers still fire at once; on Node 24
 * (`pnpm test:node24`) they also check that nothing is printed, and the last test checks that this
 * process has not printed the warning before (Node prints it only once).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { WireClient, WireClientError } from '@gridlink/protocol';
import { Scheduler } from '@gridlink/node/internal';
import { ScriptedNode } from '@gridlink/testkit';

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
/** Node 23 added TimeoutNegativeWarning (and TimeoutNaNWarning). */
const WARNS_ON_NEGATIVE = NODE_MAJOR >= 23;

const timerWarnings: string[] = [];
const onWarning = (w: Error): void => {
  if (w.name.startsWith('Timeout')) timerWarnings.push(`${w.name}: ${w.message}`);
};
beforeAll(() => process.on('warning', onWarning));
afterAll(() => process.off('warning', onWarning));

/** Lets warnings emitted on process.nextTick reach the listener. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Delays a deadline already behind us produces: 0, fractions of a millisecond, negative. */
const pastDelay = fc.oneof(
  fc.integer({ min: -2_000_000_000, max: 0 }),
  fc.double({ min: -1e6, max: 0.999, noNaN: true }),
  fc.constantFrom(-0, -1, Number.MIN_VALUE, -Number.MIN_VALUE),
);

describe('timers for a deadline already passed', () => {
  it('the Scheduler fires them at once and Node prints no warning', async () => {
    const s = new Scheduler();
    try {
      await fc.assert(
        fc.asyncProperty(pastDelay, async (ms) => {
          let fired = false;
          await new Promise<void>((resolve) => {
            s.setTimeout(() => {
              fired = true;
              resolve();
            }, ms);
          });
          await settle();
          expect(fired).toBe(true);
          expect(timerWarnings).toEqual([]);
        }),
        { numRuns: 60 },
      );
    } finally {
      s.stop();
    }
  });

  it('a WireClient request with such a timeout fails with GRID_WIRE_TIMEOUT and Node prints no warning', async () => {
    // Answers the handshake, then never answers a request.
    const node = await new ScriptedNode('silent', 8).start();
    const wire = new WireClient({ host: '127.0.0.1', port: node.port, sessionId: 'past-deadline', handshakeTimeoutMs: 5_000 });
    try {
      await wire.ready;
      await fc.assert(
        fc.asyncProperty(pastDelay, async (ms) => {
          const err: unknown = await wire.request(1, { k: 'x' }, ms).then(
            () => new Error('a silent node answered'),
            (e: unknown) => e,
          );
          await settle();
          expect(err).toBeInstanceOf(WireClientError);
          expect((err as WireClientError).code).toBe('GRID_WIRE_TIMEOUT');
          expect(timerWarnings).toEqual([]);
        }),
        { numRuns: 30 },
      );
      expect(wire.inFlight).toBe(0);
    } finally {
      wire.close();
      await node.close();
    }
  });

  // Runs last: Node prints the warning once per process, so on Node 23+ this also shows that
  // nothing in this file's process printed it before (the checks above could have failed).
  it('Node itself warns on a negative delay from version 23 on, and not before', async () => {
    clearTimeout(setTimeout(() => {}, -1));
    await settle();
    expect(timerWarnings).toEqual(WARNS_ON_NEGATIVE ? ['TimeoutNegativeWarning: -1 is a negative number.\nTimeout duration was set to 1.'] : []);
  });
});
