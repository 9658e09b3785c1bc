/**
 * Whether two values have the same JSON text, without building it. Records are stored and
 * compared as JSON: the coordinator decides that a step changed nothing by comparing the old and
 * new record so, and stringifying both records of tens of thousands of partitions on every step
 * cost more than the step. This walks them instead and stops at the first difference; lists the
 * new record took over from the old one unchanged compare by identity.
 *
 * The answer is `JSON.stringify(a) === JSON.stringify(b)` (property-tested against it): key
 * order counts, a property whose value JSON leaves out (undefined, a function, a symbol) is not
 * there, NaN and the infinities are null, 0 and -0 are both 0, and in a list a hole or a value
 * JSON leaves out is null. Anything beyond plain objects, lists and primitives (a `toJSON`, a
 * class instance, a boxed primitive, a bigint) is left to JSON.stringify itself.
 */

const DIFFERENT = 0;
const SAME = 1;
/** A value whose JSON text this walk does not work out: JSON.stringify decides. */
const UNSURE = 2;
type Verdict = typeof DIFFERENT | typeof SAME | typeof UNSURE;

export function sameJson(a: unknown, b: unknown): boolean {
  const v = compare(a, b, false);
  return v === UNSURE ? JSON.stringify(a) === JSON.stringify(b) : v === SAME;
}

/** A value JSON leaves out of an object (and prints as null in a list). */
const omitted = (v: unknown): boolean => v === undefined || typeof v === 'function' || typeof v === 'symbol';

/** A value JSON prints as null. */
const printsNull = (v: unknown): boolean => v === null || (typeof v === 'number' && !Number.isFinite(v));

/** A plain object or list, which JSON prints from its own fields; anything else is UNSURE. */
function plain(v: object): boolean {
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return Array.isArray(v) ? proto === Array.prototype : proto === Object.prototype || proto === null;
}

/** A value this walk leaves to JSON.stringify: a bigint (it throws), an object not plain. */
const unprintable = (v: unknown): boolean => typeof v === 'bigint' || (typeof v === 'object' && v !== null && !plain(v));

/**
 * Two values in the same place of their texts (`inList`: an element of a list, where omitted
 * values print null). JSON's grammar is unambiguous, so two texts are the same exactly when what
 * they print is: DIFFERENT as soon as that differs where every value was plain, UNSURE as soon as
 * a value this walk does not print is met.
 */
function compare(a: unknown, b: unknown, inList: boolean): Verdict {
  if (a === b) return typeof a === 'bigint' ? UNSURE : SAME;
  if (unprintable(a) || unprintable(b)) return UNSURE;
  const aObj = typeof a === 'object' && a !== null;
  const bObj = typeof b === 'object' && b !== null;
  if (aObj && bObj) {
    const aList = Array.isArray(a);
    if (aList !== Array.isArray(b)) return DIFFERENT;
    return aList ? compareLists(a as unknown[], b as unknown[]) : compareObjects(a as Record<string, unknown>, b as Record<string, unknown>);
  }
  if (aObj || bObj) return DIFFERENT;
  // Primitives (and, in a list, what prints null).
  const aNull = printsNull(a) || (inList && omitted(a));
  const bNull = printsNull(b) || (inList && omitted(b));
  if (aNull || bNull) return aNull && bNull ? SAME : DIFFERENT;
  // Outside a list omitted values are JSON's `undefined` (at the top) or checked by the caller.
  if (omitted(a) || omitted(b)) return omitted(a) && omitted(b) ? SAME : DIFFERENT;
  return DIFFERENT;
}

function compareLists(a: readonly unknown[], b: readonly unknown[]): Verdict {
  if (a.length !== b.length) return DIFFERENT;
  for (let i = 0; i < a.length; i++) {
    const v = compare(a[i], b[i], true);
    if (v !== SAME) return v;
  }
  return SAME;
}

function compareObjects(a: Record<string, unknown>, b: Record<string, unknown>): Verdict {
  const ak = Object.keys(a);
  const bk = Object.keys(b);
  let i = 0;
  let j = 0;
  for (;;) {
    // The next field each prints (values JSON leaves out are not printed).
    while (i < ak.length && omitted(a[ak[i]!])) i++;
    while (j < bk.length && omitted(b[bk[j]!])) j++;
    const aEnd = i === ak.length;
    const bEnd = j === bk.length;
    const av = aEnd ? undefined : a[ak[i]!];
    const bv = bEnd ? undefined : b[bk[j]!];
    // JSON.stringify decides what such a value prints, and so whether its field is printed at all.
    if ((!aEnd && unprintable(av)) || (!bEnd && unprintable(bv))) return UNSURE;
    if (aEnd || bEnd) return aEnd && bEnd ? SAME : DIFFERENT;
    if (ak[i] !== bk[j]) return DIFFERENT;
    const v = compare(av, bv, false);
    if (v !== SAME) return v;
    i++;
    j++;
  }
}
