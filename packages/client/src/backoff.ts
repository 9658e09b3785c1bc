/**
 * Backoff policy (pure): exponential growth with jitter, capped. Used for reconnects; operation
 * retries use p-retry with the same parameters.
 */

export interface BackoffPolicy {
  /** Delay before the first retry (ms). */
  minDelay: number;
  /** Upper bound of any delay (ms). */
  maxDelay: number;
  /** Growth factor per attempt (>= 1). */
  factor: number;
  /** Jitter fraction in [0, 1]: the delay is drawn uniformly from [d * (1 - jitter), d]. */
  jitter: number;
}

/**
 * Delay before retry number `attempt` (0-based). `random` is a number in [0, 1).
 * Always within [minDelay * (1 - jitter), maxDelay] and never negative.
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: number): number {
  const a = Math.max(0, Math.floor(attempt));
  // Cap the exponent to avoid Infinity for large attempt counts.
  const raw = policy.minDelay * Math.pow(policy.factor, Math.min(a, 64));
  const base = Math.min(policy.maxDelay, Number.isFinite(raw) ? raw : policy.maxDelay);
  const r = Math.min(Math.max(random, 0), 1);
  const delay = base * (1 - policy.jitter * r);
  return Math.max(0, Math.round(delay));
}
