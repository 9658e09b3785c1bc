/**
 * Latency histogram (pure): log-linear buckets over microseconds, constant memory, percentiles
 * accurate to about 3% of the value. Used for per-node latency in `stats()`.
 */

const SUB_BUCKETS = 32; // per power of two
const SUB_BUCKETS_LOG2 = 5;

function bucketOf(us: number): number {
  if (us < SUB_BUCKETS) return Math.max(0, Math.floor(us));
  // floor(log2(us)): from the leading zeros of its integer part when that fits in 32 bits.
  // (`2 ** exp` and Math.log2 ran as calls to the C library's pow on every recorded response.)
  const exp = us < 0x1_0000_0000 ? 31 - Math.clz32(us) : Math.floor(Math.log2(us));
  const base = exp < 31 ? 1 << exp : 2 ** exp;
  const sub = Math.floor(((us - base) / base) * SUB_BUCKETS);
  return SUB_BUCKETS + (exp - SUB_BUCKETS_LOG2) * SUB_BUCKETS + Math.min(sub, SUB_BUCKETS - 1);
}

function bucketUpper(b: number): number {
  if (b < SUB_BUCKETS) return b + 1;
  const rel = b - SUB_BUCKETS;
  const exp = Math.floor(rel / SUB_BUCKETS) + Math.log2(SUB_BUCKETS);
  const sub = rel % SUB_BUCKETS;
  const base = 2 ** exp;
  return base + ((sub + 1) * base) / SUB_BUCKETS;
}

export class LatencyHistogram {
  /** Count per bucket index (grown on demand; buckets stay few, a few hundred for hours). */
  private counts: number[] = [];
  private total = 0;

  /** Records one sample in milliseconds. */
  record(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const b = bucketOf(ms * 1000);
    const counts = this.counts;
    while (counts.length <= b) counts.push(0);
    counts[b]!++;
    this.total++;
  }

  get count(): number {
    return this.total;
  }

  /** The q-quantile (0..1) in milliseconds (upper bound of its bucket), or 0 when empty. */
  percentile(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil(Math.min(Math.max(q, 0), 1) * this.total));
    const counts = this.counts;
    let seen = 0;
    let last = 0;
    for (let k = 0; k < counts.length; k++) {
      const n = counts[k]!;
      if (n === 0) continue;
      last = k;
      seen += n;
      if (seen >= rank) return bucketUpper(k) / 1000;
    }
    return bucketUpper(last) / 1000;
  }
}
