import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/index.js';
import { stableRange } from '../src/processes.js';

describe('freePort', () => {
  it('hands out distinct bindable ports below the ephemeral range', async () => {
    const range = stableRange();
    const ports = await Promise.all(Array.from({ length: 40 }, () => freePort()));
    expect(new Set(ports).size).toBe(ports.length);
    for (const p of ports) {
      if (range !== null) {
        expect(p).toBeGreaterThanOrEqual(range.lo);
        expect(p).toBeLessThanOrEqual(range.hi);
      }
    }
    // Each one can be listened on right away.
    const s = createServer();
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(ports[0], '127.0.0.1', resolve);
    });
    await new Promise<void>((r) => s.close(() => r()));
  });
});
