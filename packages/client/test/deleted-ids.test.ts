import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DeletedIds } from '@gridlink/client/internal';

describe('the NATS address finder’s memory of deleted node ids', () => {
  it('guards a delete against older reads, forgets it once re-announced, and keeps only the last keepMs of deletes (property)', () => {
    const event = fc.record({
      id: fc.integer({ min: 0, max: 40 }).map((i) => `node-${i}`),
      kind: fc.constantFrom('delete' as const, 'announce' as const),
      afterMs: fc.integer({ min: 0, max: 90_000 }),
    });
    fc.assert(
      fc.property(fc.array(event, { maxLength: 300 }), (events) => {
        let now = 0;
        const keepMs = 600_000;
        const ids = new DeletedIds(keepMs, () => now);
        // The model: each id's last delete (revision, time), unless announced again since.
        const model = new Map<string, { revision: number; at: number }>();
        let revision = 0;
        let lastNoteAt = 0;
        for (const e of events) {
          now += e.afterMs;
          revision++;
          if (e.kind === 'delete') {
            lastNoteAt = now;
            ids.note(e.id, revision);
            model.set(e.id, { revision, at: now });
          } else {
            ids.forget(e.id);
            model.delete(e.id);
          }
          for (const [id, m] of model) {
            // A delete younger than keepMs is always remembered, with its revision.
            if (now - m.at < keepMs) expect(ids.revision(id)).toBe(m.revision);
          }
          // Nothing older than keepMs when the last delete was noted (pruned then), nothing
          // re-announced or never deleted.
          const recent = [...model.values()].filter((m) => m.at > lastNoteAt - keepMs).length;
          expect(ids.size).toBeLessThanOrEqual(recent);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a client that saw a thousand nodes come and go over hours remembers only the last ten minutes of them', () => {
    let now = 0;
    const ids = new DeletedIds(undefined, () => now);
    for (let i = 0; i < 1000; i++) {
      now += 60_000; // one node replaced a minute
      ids.note(`pod-${i}`, i + 1);
    }
    expect(ids.size).toBe(10);
    expect(ids.revision('pod-999')).toBe(1000);
    expect(ids.revision('pod-0')).toBe(0);
    ids.clear();
    expect(ids.size).toBe(0);
  });
});
