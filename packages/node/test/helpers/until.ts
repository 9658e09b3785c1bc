/** Polls `cond` every 10 ms until it holds; throws naming `what` once `timeoutMs` has passed. */
export async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Polls `pred` every 10 ms until it holds; after `timeoutMs` (on the monotonic clock, so also
 * under a faked Date) throws naming `what`, with `state()` of the moment.
 */
export async function eventually(pred: () => boolean, timeoutMs: number, what: string, state: () => unknown): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; now: ${JSON.stringify(state())}`);
    await new Promise<void>((r) => setTimeout(r, 10));
  }
}

/**
 * Polls `f` every 10 ms until it returns something other than null, and returns that; after
 * `timeoutMs` throws naming `what`, with `state()` of the moment when given.
 */
export async function untilValue<T>(f: () => Promise<T | null> | T | null, what: string, timeoutMs = 10_000, state?: () => unknown): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${state === undefined ? '' : `; now: ${JSON.stringify(await state())}`}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
