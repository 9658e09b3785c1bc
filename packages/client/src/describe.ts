/**
 * A short description of a value for an error message. On its own so that modules `config.ts`
 * refers to (the address finders) can use it without an import cycle.
 */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 64 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return 'a symbol';
  return `${v as number | bigint | boolean | undefined}`;
}
