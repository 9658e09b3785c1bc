/**
 * The circuit breaker's tokens: a report counts only for the state its call was admitted in, so
 * a late report of a call admitted while closed cannot settle the half-open state (free the probe's
 * slot for a second probe, close the breaker, or open it again). A property over arbitrary
 * interleavings of admissions, late reports and clock steps, then the cases one by one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CircuitBreaker, DedupeError, type BreakerState } from '@gridlink/dedupe';

type Kind = 'success' | 'failure' | 'cancel';
type Step = { op: 'admit'; dt: number } | { op: 'report'; pick: number; kind: Kind; dt: number } | { op: 'tick'; dt: number };

interface Call {
  token: number;
  /** Admitted as the half-open probe. */
  probe: boolean;
  /** How many changes of state the breaker had made when the call was admitted. */
  period: number;
}

const dt = fc.integer({ min: 0, max: 150 });
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant('admit' as const), dt }),
  fc.record({ op: fc.constant('report' as const), pick: fc.nat(), kind: fc.constantFrom<Kind>('success', 'failure', 'cancel'), dt }),
  fc.record({ op: fc.constant('tick' as const), dt }),
);

function report(b: CircuitBreaker, call: Call, kind: Kind, now: number): void {
  if (kind === 'success') b.success(call.token);
  else if (kind === 'failure') b.failure(now, call.token);
  else b.cancel(call.token);
}

describe('CircuitBreaker tokens', () => {
  it('in half-open admits at most one probe until it reports, and only a report of the current state changes it, for any interleaving', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 200 }), fc.array(step, { maxLength: 120 }), (threshold, openMs, steps) => {
        const changes: [BreakerState, BreakerState][] = [];
        const b = new CircuitBreaker({ failureThreshold: threshold, openMs }, (s, p) => changes.push([s, p]));
        const inFlight: Call[] = [];
        /** Failures counted in the current closed period (the model of the threshold). */
        let fails = 0;
        let now = 0;
        for (const s of steps) {
          now += s.dt;
          if (s.op === 'tick') continue;
          if (s.op === 'admit') {
            const before = b.state;
            const token = b.allow(now);
            if (!token) {
              expect(before).not.toBe('closed');
              continue;
            }
            if (before === 'closed') expect(b.state).toBe('closed');
            inFlight.push({ token, probe: b.state === 'half-open', period: changes.length });
          } else {
            if (inFlight.length === 0) continue;
            const [call] = inFlight.splice(s.pick % inFlight.length, 1) as [Call];
            const state = b.state;
            const changed = changes.length;
            const current = call.period === changed;
            report(b, call, s.kind, now);
            if (!current) {
              // Admitted in an earlier state (or period of one): its report changes nothing.
              expect(changes.length).toBe(changed);
              expect(b.state).toBe(state);
            } else if (call.probe) {
              expect(b.state).toBe(s.kind === 'success' ? 'closed' : s.kind === 'failure' ? 'open' : 'half-open');
              if (s.kind !== 'cancel') fails = 0;
            } else {
              // A call of the current closed period: counted towards the threshold.
              expect(state).toBe('closed');
              if (s.kind === 'success') fails = 0;
              else if (s.kind === 'failure') fails++;
              if (fails >= threshold) {
                expect(b.state).toBe('open');
                fails = 0;
              } else expect(b.state).toBe('closed');
            }
          }
          // The invariant: at most one probe in flight, and while one is, the breaker is
          // half-open and admits nothing else.
          const probes = inFlight.filter((c) => c.probe);
          expect(probes.length).toBeLessThanOrEqual(1);
          if (probes.length === 1) {
            expect(b.state).toBe('half-open');
            expect(b.allow(now)).toBeFalsy();
          }
        }
        for (const [s, p] of changes) expect(s).not.toBe(p);
      }),
      { numRuns: 500 },
    );
  });

  it('gives positive integer tokens, 0 when it refuses', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10 });
    const closed = b.allow(0);
    expect(Number.isInteger(closed) && closed > 0).toBe(true);
    b.failure(0, closed);
    expect(b.allow(1)).toBe(0);
    const probe = b.allow(10);
    expect(Number.isInteger(probe) && probe > closed).toBe(true);
    expect(b.allow(10)).toBe(0);
  });

  /** A breaker (threshold 1, openMs 10) opened by one failure at 0, with a call admitted before. */
  function openedWithLateCall(): { b: CircuitBreaker; late: number } {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10 });
    const late = b.allow(0);
    b.failure(0, b.allow(0));
    expect(b.state).toBe('open');
    return { b, late };
  }

  it('a late success of a call admitted while closed neither frees the probe slot nor closes the breaker', () => {
    const { b, late } = openedWithLateCall();
    const probe = b.allow(10);
    expect(b.state).toBe('half-open');
    b.success(late);
    expect(b.state).toBe('half-open');
    expect(b.allow(11)).toBe(0); // still one probe: the first one's
    b.success(probe);
    expect(b.state).toBe('closed');
  });

  it('a late failure of a call admitted while closed does not reopen a half-open breaker', () => {
    const { b, late } = openedWithLateCall();
    const probe = b.allow(10);
    b.failure(10, late);
    expect(b.state).toBe('half-open');
    expect(b.allow(11)).toBe(0);
    b.failure(12, probe);
    expect(b.state).toBe('open');
    expect(b.allow(21)).toBe(0); // open for openMs from the probe's failure
    expect(b.allow(22)).toBeGreaterThan(0);
  });

  it('a late cancel does not free the probe slot; the probe own cancel does, and the next probe has a new token', () => {
    const { b, late } = openedWithLateCall();
    const probe = b.allow(10);
    b.cancel(late);
    expect(b.allow(11)).toBe(0);
    b.cancel(probe);
    const next = b.allow(12);
    expect(next).toBeGreaterThan(probe);
    // The cancelled probe reporting again changes nothing.
    b.failure(13, probe);
    expect(b.state).toBe('half-open');
    expect(b.allow(14)).toBe(0);
  });

  it('a failure of a call admitted in an earlier closed period does not count in the next one', () => {
    const b = new CircuitBreaker({ failureThreshold: 2, openMs: 10 });
    const old = b.allow(0);
    b.failure(0, b.allow(0));
    b.failure(0, b.allow(0));
    expect(b.state).toBe('open');
    b.success(b.allow(10));
    expect(b.state).toBe('closed');
    b.failure(11, old);
    b.failure(11, b.allow(11));
    expect(b.state).toBe('closed'); // one failure of this period, not two
    b.failure(12, b.allow(12));
    expect(b.state).toBe('open');
  });

  it('calls admitted while closed share the period token; a success of one resets the count', () => {
    const b = new CircuitBreaker({ failureThreshold: 2, openMs: 10 });
    const t1 = b.allow(0);
    const t2 = b.allow(0);
    expect(t2).toBe(t1);
    b.failure(0, t1);
    b.success(t2);
    b.failure(0, b.allow(0));
    expect(b.state).toBe('closed');
  });

  it('a listener that takes the probe when the breaker goes half-open leaves none for the caller', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10 });
    let taken = 0;
    b.onStateChange((s) => {
      if (s === 'half-open') taken = b.allow(10);
    });
    b.failure(0, b.allow(0));
    expect(b.allow(10)).toBe(0);
    expect(taken).toBeGreaterThan(0);
    b.success(taken);
    expect(b.state).toBe('closed');
  });

  it('refuses what is not a token it gave out with a typed error, and goes on deciding', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10 });
    const token = b.allow(0);
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity, token + 1, '1', undefined, null, true]) {
      for (const f of [() => b.success(bad as number), () => b.failure(0, bad as number), () => b.cancel(bad as number)]) {
        let caught: unknown;
        try {
          f();
        } catch (e) {
          caught = e;
        }
        expect(caught).toBeInstanceOf(DedupeError);
        expect((caught as DedupeError).code).toBe('DEDUPE_BREAKER_TOKEN');
      }
    }
    expect(b.state).toBe('closed');
    b.failure(0, token);
    expect(b.state).toBe('open');
  });
});
