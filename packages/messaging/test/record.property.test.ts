import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkJobId, MAX_JOB_ID_LENGTH, retryDelay, InvalidJobIdError, InvalidPayloadError } from '@gridlink/messaging';
import { checkValue, checkpoint, claim, complete, decodeRecord, encodeRecord, fail, isTerminal, jobIdOfKey, newRecord, unclaim, type JobRecord } from '../src/record.js';
import { encodeKey } from '@gridlink/affinity';

const policy = { initialDelayMs: 100, maxDelayMs: 5000, factor: 2 };

type Op =
  | { k: 'claim'; token: number }
  | { k: 'checkpoint'; token: number }
  | { k: 'complete'; token: number }
  | { k: 'fail'; token: number }
  | { k: 'unclaim'; token: number }
  | { k: 'tick'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('claim' as const), token: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ k: fc.constant('checkpoint' as const), token: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ k: fc.constant('complete' as const), token: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ k: fc.constant('fail' as const), token: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ k: fc.constant('unclaim' as const), token: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ k: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 10_000 }) }),
);

describe('job record transitions (properties)', () => {
  it('only the latest claim may write; tokens only grow; finished jobs never change; failures stay within maxAttempts, lost runs within maxLostRuns', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.array(op, { maxLength: 60 }), (maxAttempts, maxLostRuns, ops) => {
        let now = 1000;
        let r: JobRecord = newRecord('j', { p: 1 }, maxAttempts, now, 0, { maxLostRuns });
        let completions = 0;
        /** Transitions into `failed`: each is a dead letter. */
        let deadLetters = 0;
        for (const o of ops) {
          const before = r;
          if (o.k === 'tick') {
            now += o.ms;
            continue;
          }
          const t =
            o.k === 'claim'
              ? claim(r, o.token, 'w', now)
              : o.k === 'checkpoint'
                ? checkpoint(r, o.token, { at: now }, now)
                : o.k === 'complete'
                  ? complete(r, o.token, 'ok', now)
                  : o.k === 'unclaim'
                    ? unclaim(r, o.token, now)
                    : fail(r, o.token, { name: 'E', message: 'x' }, now, policy);
          if (!t.ok) continue;
          r = t.next;
          // Finished jobs are absorbing: nothing follows a completion or a dead letter.
          expect(isTerminal(before.state)).toBe(false);
          if (r.state === 'failed') deadLetters++;
          // Tokens never go back.
          expect(r.token).toBeGreaterThanOrEqual(before.token);
          if (o.k === 'claim') {
            expect(o.token).toBeGreaterThan(before.token);
            if (before.state === 'running') {
              // A takeover: the run it replaces is counted as lost, and the last allowed one
              // fails the job instead of starting a run.
              expect(r.lostRuns).toBe((before.lostRuns ?? 0) + 1);
              expect(r.error?.code).toBe('JOB_RUN_LOST');
              expect(r.attempt).toBe(r.state === 'failed' ? before.attempt : before.attempt + 1);
              expect(r.state).toBe(r.lostRuns === maxLostRuns ? 'failed' : 'running');
            } else {
              expect(r.lostRuns).toBe(before.lostRuns);
              expect(r.attempt).toBe(before.attempt + 1);
            }
          } else {
            // Every owner write is by the latest claim of a running job.
            expect(o.token).toBe(before.token);
            expect(before.state).toBe('running');
          }
          if (o.k === 'complete') completions++;
          if (o.k === 'unclaim') {
            // A claim given back before its run started: pending, due now, not counted as a run.
            expect(r.state).toBe('pending');
            expect(r.attempt).toBe(before.attempt - 1);
            expect(r.lostRuns).toBe(before.lostRuns);
          }
          expect(r.failures).toBeLessThanOrEqual(maxAttempts);
          expect(r.lostRuns).toBeLessThanOrEqual(maxLostRuns);
          if (r.state === 'failed') expect(r.failures === maxAttempts || r.lostRuns === maxLostRuns).toBe(true);
          if (r.state === 'pending' && o.k === 'fail') expect(r.notBefore).toBeGreaterThanOrEqual(now);
        }
        expect(completions).toBeLessThanOrEqual(1);
        // Dead-lettered at most once, and never after a completion (nor both).
        expect(deadLetters).toBeLessThanOrEqual(1);
        expect(completions + deadLetters).toBeLessThanOrEqual(1);
      }),
      { numRuns: 500 },
    );
  });

  it('a job whose every run is lost is failed by the claim that counts its maxLostRuns-th lost run, after maxLostRuns runs; handler failures and lost runs are separate budgets', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.boolean(), { maxLength: 30 }),
        (maxAttempts, maxLostRuns, runsFail) => {
          // Each run ends by a handler failure (true) or is lost (false: the next claim takes over).
          let now = 1000;
          let r: JobRecord = newRecord('j', null, maxAttempts, now, 0, { maxLostRuns });
          let token = 0;
          let runs = 0;
          let failures = 0;
          let lost = 0;
          let lastLost = false;
          for (const failsThisRun of runsFail) {
            if (isTerminal(r.state)) break;
            now += 100_000;
            const t = claim(r, ++token, `w${token}`, now);
            expect(t.ok).toBe(true);
            if (!t.ok) return;
            r = t.next;
            if (r.state === 'failed') break; // a takeover that counted the last lost run
            runs++;
            lastLost = !failsThisRun;
            if (failsThisRun) {
              failures++;
              const f = fail(r, token, { name: 'E', message: 'x' }, now, policy);
              if (!f.ok) return;
              r = f.next;
            } else {
              lost++;
            }
          }
          // What ended the runs: the record's counters say exactly that.
          expect(r.failures).toBe(failures);
          // A lost run is counted by the claim that follows it: the last one, if still running, not yet.
          expect(r.lostRuns).toBe(lost - (r.state === 'running' && lastLost ? 1 : 0));
          expect(r.attempt).toBe(runs);
          if (r.state === 'failed') {
            // Failed by whichever budget ran out, no run past it.
            expect(r.failures === maxAttempts || r.lostRuns === maxLostRuns).toBe(true);
            expect(runs).toBeLessThanOrEqual(maxAttempts + maxLostRuns - 1);
            if (r.error?.code === 'JOB_RUN_LOST') expect(r.lostRuns).toBe(maxLostRuns);
            else expect(r.failures).toBe(maxAttempts);
          }
          expect(r.failures).toBeLessThanOrEqual(maxAttempts);
          expect(r.lostRuns).toBeLessThanOrEqual(maxLostRuns);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('records written before lostRuns, maxLostRuns and timeoutMs were kept: the claim uses the given default, and a new record round-trips', () => {
    const old = newRecord('j', null, 3, 1000) as Partial<JobRecord>;
    delete old.lostRuns;
    delete old.maxLostRuns;
    delete old.timeoutMs;
    let r = decodeRecord(encodeRecord(old as JobRecord));
    let token = 0;
    // The first claim starts a run; the next two take it over, the second of them failing it.
    for (let i = 0; i < 3; i++) {
      const t = claim(r, ++token, `w${token}`, 2000, 2);
      if (!t.ok) throw new Error('refused');
      r = t.next;
    }
    expect(r).toMatchObject({ state: 'failed', lostRuns: 2, attempt: 2, owner: 'w3', error: { code: 'JOB_RUN_LOST', message: 'worker lost while running (owner w2)' } });
    const fresh = newRecord('k', null, 3, 1000, 0, { maxLostRuns: 7, timeoutMs: 250 });
    expect(decodeRecord(encodeRecord(fresh))).toEqual(fresh);
  });

  it('records round-trip through their encoding', () => {
    fc.assert(
      // A payload is JSON: -0 is written as 0, so the generator's -0 is normalised the same way.
      // checkValue (what submit, checkpoint and completion run first) either refuses a payload with
      // a typed error or guarantees the record round-trips (an own "__proto__" key is refused).
      fc.property(fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown), fc.integer({ min: 1, max: 100 }), (payload, maxAttempts) => {
        try {
          checkValue('payload', payload, 1 << 30);
        } catch (e) {
          expect(e).toBeInstanceOf(InvalidPayloadError);
          expect(JSON.stringify(payload)).toContain('"__proto__"');
          return;
        }
        const r = newRecord('id-1', payload, maxAttempts, 5);
        expect(decodeRecord(encodeRecord(r))).toEqual(r);
      }),
    );
  });

  it('retry delays grow with failures, never exceed the maximum, and jitter keeps them within [half, full]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        fc.integer({ min: 1, max: 2000 }),
        fc.double({ min: 0.5, max: 1, noNaN: true }),
        (initialDelayMs, maxDelayMs, factor, n, jitter) => {
          const p = { initialDelayMs, maxDelayMs, factor };
          const d = retryDelay(p, n);
          expect(d).toBeLessThanOrEqual(maxDelayMs);
          expect(d).toBeGreaterThanOrEqual(0);
          expect(retryDelay(p, n + 1)).toBeGreaterThanOrEqual(d);
          const j = retryDelay(p, n, jitter);
          expect(j).toBeLessThanOrEqual(d);
          expect(j).toBeGreaterThanOrEqual(Math.floor(d / 2));
        },
      ),
    );
  });

  it('valid job ids are exactly the short ASCII names, and scanned keys decode back to them', () => {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-'.split('');
    const valid = fc.oneof(
      fc.array(fc.constantFrom(...chars), { minLength: 1, maxLength: 128 }).map((a) => a.join('')),
      // The longest ids: their key is over 127 bytes, so its length takes two LEB128 bytes.
      fc.array(fc.constantFrom(...chars), { minLength: 100, maxLength: 128 }).map((a) => a.join('')),
    );
    fc.assert(
      fc.property(valid, (id) => {
        checkJobId(id);
        const key = encodeKey(id);
        expect(jobIdOfKey(key)).toBe(id);
        // Other keys are not job ids: composites, numbers, cut or padded bytes.
        expect(jobIdOfKey(encodeKey([id]))).toBeUndefined();
        expect(jobIdOfKey(key.subarray(0, key.length - 1))).toBeUndefined();
        expect(jobIdOfKey(new Uint8Array([...key, 0x61]))).toBeUndefined();
      }),
    );
    // Until this check the longest ids (over 127 characters, a two-byte length) were not
    // recognised, so a sweep never found a job with a 128-character id.
    expect(jobIdOfKey(encodeKey('x'.repeat(128)))).toBe('x'.repeat(128));
    expect(jobIdOfKey(encodeKey(12345))).toBeUndefined();
    expect(jobIdOfKey(encodeKey('y'.repeat(129)))).toBeUndefined();
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: fc.constantFrom('a', 'Z', '9', '.', '_', ':', '-', ' ', '/', 'é', '*', '>', '\u0000', '😀'), maxLength: 140 })), (s) => {
        const ok = s.length >= 1 && s.length <= MAX_JOB_ID_LENGTH && /^[A-Za-z0-9._:-]+$/.test(s);
        if (ok) expect(() => checkJobId(s)).not.toThrow();
        else expect(() => checkJobId(s)).toThrow(InvalidJobIdError);
      }),
    );
  });
});
