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
import { ErrorCode, binWriterBytes, type BinWriter } from '@gridlink/protocol';
import { GridNodeError } from '../errors.js';
import type { ReplicateMsg } from '../partitions/messages.js';
import { EMPTY } from '../store/cache-ops.js';
import type { PutInPlace, ReplicationRecord } from '../store/index.js';
import { MAX_CACHE_NAME, isSafeNonNegative } from '../store/payload.js';

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

/** Strings remembered per field: senders, their epochs and sessions alternate from record to record. */
const MEMO_SIZE = 8;

/**
 * UTF-8 bytes of one string field, remembered for the next calls: the sender, the targets'
 * epochs, the cache and (per client) the session repeat, though not always in a row.
 */
class Utf8Memo {
  private readonly strs: string[] = [];
  private readonly bytes: Uint8Array[] = [];
  private next = 0;
  get(s: string): Uint8Array {
    const strs = this.strs;
    for (let i = 0; i < strs.length; i++) if (strs[i] === s) return this.bytes[i]!;
    const b = Buffer.from(s, 'utf8');
    strs[this.next] = s;
    this.bytes[this.next] = b;
    this.next = (this.next + 1) % MEMO_SIZE;
    return b;
  }
}
const fromMemo = new Utf8Memo();
const epochMemo = new Utf8Memo();
const cacheMemo = new Utf8Memo();
const sessionMemo = new Utf8Memo();

/**
 * The binary form of a record message, or null when it has none (the caller sends the map
 * form). Strings longer than 65 535 bytes fall back to the map form too. Its bytes in an array of
 * their own; `replicateWriter` writes them where they are needed instead.
 */
export function encodeReplicate(p: number, v: number, from: string, epoch: string, rec: ReplicationRecord): Uint8Array | null {
  const w = replicateWriter(p, v, from, epoch, rec);
  return w === null ? null : binWriterBytes(w);
}

/**
 * The binary form of a record message as a BinWriter, or null when it has none: the batch frame's
 * encoder writes it straight into the frame, so a record's key and value are copied once on the
 * primary (into the frame) instead of twice (into a record array, then into the frame), and no
 * array is made per record (ADR 0077). The record must not change until the frame is encoded
 * (records are made per write and never changed).
 */
export function replicateWriter(p: number, v: number, from: string, epoch: string, rec: ReplicationRecord): ReplicateWriter | null {
  if (!binaryRecord(rec)) return null;
  const eff = rec.effects[0] as PutEffect;
  const d = rec.dedup;
  const fromB = fromMemo.get(from);
  const epochB = epochMemo.get(epoch);
  const cacheB = cacheMemo.get(eff.cache);
  const sessionB = sessionMemo.get(d === null ? '' : d.session);
  if (fromB.length > MAX_U16 || epochB.length > MAX_U16 || cacheB.length > MAX_U16 || sessionB.length > MAX_U16) return null;
  return new ReplicateWriter(p, v, fromB, epochB, cacheB, sessionB, rec, eff);
}

type PutEffect = { t: 'put'; cache: string; key: Uint8Array; value: Uint8Array; expireAt: number };

/** The fixed-width fields are written here (with Buffer's little-endian writers), then copied out. */
const headScratch = Buffer.allocUnsafeSlow(HEADER);

/** One record's binary form, written on demand (see replicateWriter). */
export class ReplicateWriter implements BinWriter {
  readonly byteLength: number;
  constructor(
    private readonly p: number,
    private readonly v: number,
    private readonly fromB: Uint8Array,
    private readonly epochB: Uint8Array,
    private readonly cacheB: Uint8Array,
    private readonly sessionB: Uint8Array,
    private readonly rec: ReplicationRecord,
    private readonly eff: PutEffect,
  ) {
    this.byteLength = HEADER + fromB.length + epochB.length + cacheB.length + sessionB.length + eff.key.length + eff.value.length;
  }

  writeTo(out: Uint8Array, at: number): void {
    const { rec, eff, fromB, epochB, cacheB, sessionB } = this;
    const d = rec.dedup;
    const h = headScratch;
    let flags = 0;
    if (d !== null) flags |= F_DEDUP;
    if (d?.ack !== undefined) flags |= F_ACK;
    h[0] = FORMAT;
    h[1] = flags;
    h.writeUInt16LE(d === null ? 0 : d.op, 2);
    h.writeUInt32LE(this.p, 4);
    h.writeDoubleLE(this.v, 8);
    h.writeDoubleLE(rec.counter, 16);
    h.writeDoubleLE(rec.at, 24);
    h.writeDoubleLE(eff.expireAt, 32);
    h.writeDoubleLE(d === null ? 0 : d.seq, 40);
    h.writeDoubleLE(d?.ack ?? 0, 48);
    h.writeUInt16LE(fromB.length, 56);
    h.writeUInt16LE(epochB.length, 58);
    h.writeUInt16LE(cacheB.length, 60);
    h.writeUInt16LE(sessionB.length, 62);
    h.writeUInt32LE(eff.key.length, 64);
    h.writeUInt32LE(eff.value.length, 68);
    out.set(h, at);
    let o = at + HEADER;
    out.set(fromB, o);
    o += fromB.length;
    out.set(epochB, o);
    o += epochB.length;
    out.set(cacheB, o);
    o += cacheB.length;
    out.set(sessionB, o);
    o += sessionB.length;
    out.set(eff.key, o);
    out.set(eff.value, o + eff.key.length);
  }
}

const head = new Uint8Array(HEADER);
const headView = new DataView(head.buffer);

/**
 * The string of one field's UTF-8 bytes, remembered for the next records: senders, epochs,
 * cache and sessions repeat, though not always in a row, so most reads only compare bytes.
 */
class TextMemo {
  private readonly bytes: Uint8Array[] = [];
  private readonly strs: string[] = [];
  private next = 0;
  get(b: Uint8Array, at: number, len: number): string {
    const known = this.bytes;
    for (let k = 0; k < known.length; k++) {
      const c = known[k]!;
      if (c.length !== len) continue;
      let i = 0;
      while (i < len && c[i] === b[at + i]) i++;
      if (i === len) return this.strs[k]!;
    }
    const copy = b.slice(at, at + len);
    const str = Buffer.from(copy.buffer, copy.byteOffset, len).toString('utf8');
    known[this.next] = copy;
    this.strs[this.next] = str;
    this.next = (this.next + 1) % MEMO_SIZE;
    return str;
  }
}
const fromText = new TextMemo();
const epochText = new TextMemo();
const cacheText = new TextMemo();
const sessionText = new TextMemo();

function bad(message: string): GridNodeError {
  return new GridNodeError(ErrorCode.BAD_REQUEST, `binary replication record: ${message}`);
}

/**
 * A binary put record's fields read in place (readReplicate): numbers, the (remembered) strings,
 * and where its key and value lie in the record's bytes. What the store applies without building
 * the record's objects (PutInPlace), plus the message's addressing.
 */
export interface PutView extends PutInPlace {
  p: number;
  v: number;
  from: string;
  epoch: string;
}

/** A fresh view to read records into (one per reader; readReplicate overwrites it). */
export function putView(): PutView {
  return { p: 0, v: 0, from: '', epoch: '', counter: 0, at: 0, cache: '', expireAt: 0, bytes: EMPTY_BYTES, keyAt: 0, keyLen: 0, valueLen: 0, dedup: false, session: '', seq: 0, op: 0, hasAck: false, ack: 0 };
}
const EMPTY_BYTES = new Uint8Array(0);

/**
 * Reads a binary record into `out` without building its objects: once the strings repeat from
 * record to record (they do), nothing is allocated. Throws GridNodeError BAD_REQUEST on a
 * malformed one, exactly as decodeReplicate; field values are checked by wellFormedView.
 */
export function readReplicate(bytes: Uint8Array, out: PutView): PutView {
  const n = bytes.length;
  if (n < HEADER) throw bad(`${n} bytes is shorter than its header`);
  // The fixed-width header is copied into a scratch buffer and read from there: no view objects.
  for (let i = 0; i < HEADER; i++) head[i] = bytes[i]!;
  if (head[0] !== FORMAT) throw bad(`unsupported format ${head[0]}`);
  const flags = head[1]!;
  if ((flags & ~(F_DEDUP | F_ACK)) !== 0 || (flags & F_ACK && !(flags & F_DEDUP))) throw bad(`bad flags ${flags}`);
  const fromLen = headView.getUint16(56, true);
  const epochLen = headView.getUint16(58, true);
  const cacheLen = headView.getUint16(60, true);
  const sessionLen = headView.getUint16(62, true);
  const keyLen = headView.getUint32(64, true);
  const valueLen = headView.getUint32(68, true);
  if (HEADER + fromLen + epochLen + cacheLen + sessionLen + keyLen + valueLen !== n) throw bad('lengths do not add up to its size');
  let o = HEADER;
  out.from = fromText.get(bytes, o, fromLen);
  o += fromLen;
  out.epoch = epochText.get(bytes, o, epochLen);
  o += epochLen;
  out.cache = cacheText.get(bytes, o, cacheLen);
  o += cacheLen;
  out.session = sessionText.get(bytes, o, sessionLen);
  o += sessionLen;
  out.bytes = bytes;
  out.keyAt = o;
  out.keyLen = keyLen;
  out.valueLen = valueLen;
  out.p = headView.getUint32(4, true);
  out.v = headView.getFloat64(8, true);
  out.counter = headView.getFloat64(16, true);
  out.at = headView.getFloat64(24, true);
  out.expireAt = headView.getFloat64(32, true);
  out.dedup = (flags & F_DEDUP) !== 0;
  out.seq = out.dedup ? headView.getFloat64(40, true) : 0;
  out.op = out.dedup ? headView.getUint16(2, true) : 0;
  out.hasAck = (flags & F_ACK) !== 0;
  out.ack = out.hasAck ? headView.getFloat64(48, true) : 0;
  return out;
}

const scratch = putView();

/**
 * The ReplicateMsg a binary record stands for. Key and value are views of `bytes` (the store
 * copies entry bytes when it keeps them). Throws GridNodeError BAD_REQUEST on a malformed one;
 * field values are checked by the store as for the map form.
 */
export function decodeReplicate(bytes: Uint8Array): ReplicateMsg {
  const h = readReplicate(bytes, scratch);
  scratch.bytes = EMPTY_BYTES;
  const key = bytes.subarray(h.keyAt, h.keyAt + h.keyLen);
  const value = bytes.subarray(h.keyAt + h.keyLen, h.keyAt + h.keyLen + h.valueLen);
  let dedup: ReplicationRecord['dedup'] = null;
  if (h.dedup) {
    dedup = { session: h.session, seq: h.seq, op: h.op, result: {} };
    if (h.hasAck) dedup.ack = h.ack;
  }
  const rec: ReplicationRecord = {
    v: 1,
    counter: h.counter,
    at: h.at,
    effects: [{ t: 'put', cache: h.cache, key, value, expireAt: h.expireAt }],
    dedup,
  };
  return { p: h.p, v: h.v, from: h.from, epoch: h.epoch, rec };
}

/**
 * Whether a record read by readReplicate already has every field value the store's own check
 * (normaliseRecord) requires, so the backup may apply it in place instead of building a checked
 * copy (ADR 0035, 0041). False sends it through that check, which refuses it as before.
 */
export function wellFormedView(h: PutInPlace): boolean {
  if (!isSafeNonNegative(h.counter) || h.counter < 1 || !Number.isFinite(h.at)) return false;
  if (h.cache.length === 0 || h.cache.length > MAX_CACHE_NAME || !isSafeNonNegative(h.expireAt)) return false;
  if (!h.dedup) return true;
  if (!isSafeNonNegative(h.seq)) return false;
  return !h.hasAck || (isSafeNonNegative(h.ack) && h.ack <= h.seq);
}

/** wellFormedView for a record decoded by decodeReplicate. */
export function wellFormedPut(rec: ReplicationRecord): boolean {
  if (!isSafeNonNegative(rec.counter) || rec.counter < 1 || !Number.isFinite(rec.at)) return false;
  const eff = rec.effects[0] as { cache: string; expireAt: number };
  if (eff.cache.length === 0 || eff.cache.length > MAX_CACHE_NAME || !isSafeNonNegative(eff.expireAt)) return false;
  const d = rec.dedup;
  if (d === null) return true;
  if (!isSafeNonNegative(d.seq)) return false;
  return d.ack === undefined || (isSafeNonNegative(d.ack) && d.ack <= d.seq);
}
