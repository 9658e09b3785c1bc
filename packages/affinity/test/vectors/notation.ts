/**
 * JSON notation for keys in partition.json. JSON strings, booleans and arrays stand for
 * themselves (arrays are composite keys); a JSON number is a number key; values JSON cannot
 * hold directly use a one-field object:
 *   { "$number": "-0" | "Infinity" | "-Infinity" }   { "$bigint": "-123" }   { "$bytes": "00ff" }
 */
import type { GridKey } from '../../src/index.js';

export type KeyJson = string | number | boolean | KeyJson[] | { $number: string } | { $bigint: string } | { $bytes: string };

export function keyToJson(key: GridKey): KeyJson {
  if (typeof key === 'string' || typeof key === 'boolean') return key;
  if (typeof key === 'number') {
    if (Object.is(key, -0) || !Number.isFinite(key)) return { $number: Object.is(key, -0) ? '-0' : String(key) };
    return key;
  }
  if (typeof key === 'bigint') return { $bigint: key.toString() };
  if (key instanceof Uint8Array) return { $bytes: Buffer.from(key).toString('hex') };
  return key.map(keyToJson);
}

export function keyFromJson(json: KeyJson): GridKey {
  if (typeof json === 'string' || typeof json === 'boolean' || typeof json === 'number') return json;
  if (Array.isArray(json)) return json.map(keyFromJson);
  if ('$number' in json) return Number(json.$number);
  if ('$bigint' in json) return BigInt(json.$bigint);
  return Uint8Array.from(Buffer.from(json.$bytes, 'hex'));
}
