/**
 * Compact binary form of the commonest replication message (ADR 0027): one record with a single
 * `put` effect whose recorded outcome is the empty result (a plain put). It travels as one
 * MessagePack bin (a Uint8Array) instead of a nested map, so neither side walks a map of string
 * keys: the primary writes fixed-width fields and copies the key and value bytes once, the
 * backup reads them back into the same ReplicateMsg the map form would have given. Every other
 * message (other effects, other results, snapshots, probes) keeps the map form.
 *
 * Layout (little-endian): u8 format (1) | u8 flags (1 = dedup, 2 = ack) | u16 op | u32 p |
 * f64 v | f64 counter | f64 at | f64 expireAt | f64 seq | f64 ack | u16 from | u16 epoch |
 * u16 cache | u16 session | u32 key | u32 value (byte lengths) | from | epoch | cache | session
 * (UTF-8) | key | value.
 */
import { ErrorCode } from '@gridlink/protocol';
import { GridNodeError } from '../errors.js';
import type { ReplicateMsg } from '../partitions/messages.js';
import { EMPTY } from '../store/cache-ops.js';
import type { ReplicationRecord } from '../store/index.js';

const FORMAT = 1;
const F_DEDUP = 1;
const F_ACK = 2;
const HEADER = 1 + 1 + 2 + 4 + 8 * 6 + 2 * 4 + 4 * 2;
const MAX_U16 = 0xffff;

/** Whether `rec` has the binary form: one put, outcome (if any) the empty result. */
export function binaryRecord(rec: ReplicationRecord): boolean {
  if (rec.effects.length !== 1 || rec.effects[0]!.t !== 'put') return false;
  return rec.dedup === null || isEmptyResult(rec.dedup.result);
}

/** The empty result `{}` (the store's shared constant, or any plain object with no keys). */
function isEmptyResult(r: unknown): boolean {
  if (r === EMPTY) return true;
  if (typeof r !== 'object' || r === null || Object.getPrototypeOf(r) !== Object.prototype) return false;
  for (const k in r) if (Object.hasOwn(r, k)) return false;
  return true;
}

/**
 * The binary form of a record message, or null when it has none (the caller sends the map
 * form). Strings longer than 65 535 bytes fall back to the map form too.
 */
export function encodeReplicate(p: number, v: number, from: string, epoch: string, rec: ReplicationRecord): Uint8Array | null {
  if (!binaryRecord(rec)) return null;
  const eff = rec.effects[0] as { t: 'put'; cache: string; key: Uint8Array; value: Uint8Array; expireAt: number };
  const d = rec.dedup;
  const session = d === null ? '' : d.session;
  const fromLen = Buffer.byteLength(from);
  const epochLen = Buffer.byteLength(epoch);
  const cacheLen = Buffer.byteLength(eff.cache);
  const sessionLen = Buffer.byteLength(session);
  if (fromLen > MAX_U16 || epochLen > MAX_U16 || cacheLen > MAX_U16 || sessionLen > MAX_U16) return null;
  const key = eff.key;
  const value = eff.value;
  const buf = Buffer.allocUnsafe(HEADER + fromLen + epochLen + cacheLen + sessionLen + key.length + value.length);
  let flags = 0;
  if (d !== null) flags |= F_DEDUP;
  if (d?.ack !== undefined) flags |= F_ACK;
  buf[0] = FORMAT;
  buf[1] = flags;
  buf.writeUInt16LE(d === null ? 0 : d.op, 2);
  buf.writeUInt32LE(p, 4);
  buf.writeDoubleLE(v, 8);
  buf.writeDoubleLE(rec.counter, 16);
  buf.writeDoubleLE(rec.at, 24);
  buf.writeDoubleLE(eff.expireAt, 32);
  buf.writeDoubleLE(d === null ? 0 : d.seq, 40);
  buf.writeDoubleLE(d?.ack ?? 0, 48);
  buf.writeUInt16LE(fromLen, 56);
  buf.writeUInt16LE(epochLen, 58);
  buf.writeUInt16LE(cacheLen, 60);
  buf.writeUInt16LE(sessionLen, 62);
  buf.writeUInt32LE(key.length, 64);
  buf.writeUInt32LE(value.length, 68);
  let o = HEADER;
  o += buf.write(from, o, fromLen, 'utf8');
  o += buf.write(epoch, o, epochLen, 'utf8');
  o += buf.write(eff.cache, o, cacheLen, 'utf8');
  o += buf.write(session, o, sessionLen, 'utf8');
  buf.set(key, o);
  buf.set(value, o + key.length);
  return buf;
}

function bad(message: string): GridNodeError {
  return new GridNodeError(ErrorCode.BAD_REQUEST, `binary replication record: ${message}`);
}

/**
 * The ReplicateMsg a binary record stands for. Key and value are views of `bytes` (the store
 * copies entry bytes when it keeps them). Throws GridNodeError BAD_REQUEST on a malformed one;
 * field values are checked by the store as for the map form.
 */
export function decodeReplicate(bytes: Uint8Array): ReplicateMsg {
  if (bytes.length < HEADER) throw bad(`${bytes.length} bytes is shorter than its header`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf[0] !== FORMAT) throw bad(`unsupported format ${buf[0]}`);
  const flags = buf[1]!;
  if ((flags & ~(F_DEDUP | F_ACK)) !== 0 || (flags & F_ACK && !(flags & F_DEDUP))) throw bad(`bad flags ${flags}`);
  const fromLen = buf.readUInt16LE(56);
  const epochLen = buf.readUInt16LE(58);
  const cacheLen = buf.readUInt16LE(60);
  const sessionLen = buf.readUInt16LE(62);
  const keyLen = buf.readUInt32LE(64);
  const valueLen = buf.readUInt32LE(68);
  if (HEADER + fromLen + epochLen + cacheLen + sessionLen + keyLen + valueLen !== buf.length) throw bad('lengths do not add up to its size');
  let o = HEADER;
  const from = buf.toString('utf8', o, (o += fromLen));
  const epoch = buf.toString('utf8', o, (o += epochLen));
  const cache = buf.toString('utf8', o, (o += cacheLen));
  const session = buf.toString('utf8', o, (o += sessionLen));
  const key = bytes.subarray(o, (o += keyLen));
  const value = bytes.subarray(o, o + valueLen);
  let dedup: ReplicationRecord['dedup'] = null;
  if (flags & F_DEDUP) {
    dedup = { session, seq: buf.readDoubleLE(40), op: buf.readUInt16LE(2), result: {} };
    if (flags & F_ACK) dedup.ack = buf.readDoubleLE(48);
  }
  const rec: ReplicationRecord = {
    v: 1,
    counter: buf.readDoubleLE(16),
    at: buf.readDoubleLE(24),
    effects: [{ t: 'put', cache, key, value, expireAt: buf.readDoubleLE(32) }],
    dedup,
  };
  return { p: buf.readUInt32LE(4), v: buf.readDoubleLE(8), from, epoch, rec };
}
