/**
 * Small helpers both sides use around the frames: handshake negotiation and error payloads.
 */
import type { ErrorCode } from './errors.js';
import {
  ALL_FEATURES,
  Feature,
  FrameKind,
  Op,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  ResponseFlag,
  type ErrorPayload,
  type HandshakeErrorFrame,
  type HandshakeRequest,
  type ResponseFrame,
} from './messages.js';
import { MAX_ERROR_MESSAGE_BYTES, utf8Length } from './validate.js';

/**
 * Default time a node gives a new connection to deliver MAGIC and a complete HANDSHAKE frame
 * before closing it (after a best-effort HANDSHAKE_ERROR with code HANDSHAKE_TIMEOUT).
 */
export const HANDSHAKE_TIMEOUT_MS = 5000;

export interface VersionRange {
  min: number;
  max: number;
}

/**
 * The protocol version both sides speak: the highest version in the intersection of the client's
 * [minVersion, maxVersion] and `supported` (default: this build's range), or null when disjoint.
 */
export function negotiateVersion(
  req: Pick<HandshakeRequest, 'minVersion' | 'maxVersion'>,
  supported: VersionRange = { min: MIN_PROTOCOL_VERSION, max: PROTOCOL_VERSION },
): number | null {
  const hi = Math.min(req.maxVersion, supported.max);
  const lo = Math.max(req.minVersion, supported.min);
  return hi >= lo ? hi : null;
}

/** Feature bits in force on a connection: those both sides set (default: this build's). */
export function negotiateFeatures(requested: number, supported: number = ALL_FEATURES): number {
  return (requested & supported) >>> 0;
}

/**
 * Request fields that only a node granting a feature understands, by op: what a request means
 * without the field is what it meant before the feature (`ifAbsent` absent: a plain acquire-get,
 * whose `acquired` tells the caller what happened).
 */
const FEATURE_FIELDS: Readonly<Partial<Record<number, readonly (readonly [field: string, feature: number])[]>>> = {
  [Op.LOCK_TRY_ACQUIRE_GET]: [['ifAbsent', Feature.LOCK_GET_IF_ABSENT]],
};

/**
 * A request payload as a node that granted `features` understands it: a copy without the fields
 * of features it did not grant (an older node refuses fields it does not know), else the payload
 * itself. The client applies it per connection, a node per peer link it forwards over.
 */
export function payloadForFeatures(op: number, payload: unknown, features: number): unknown {
  const fields = FEATURE_FIELDS[op];
  if (fields === undefined || typeof payload !== 'object' || payload === null) return payload;
  let out: Record<string, unknown> | null = null;
  for (const [field, feature] of fields) {
    if ((features & feature) !== 0 || !(field in payload)) continue;
    out ??= { ...(payload as Record<string, unknown>) };
    delete out[field];
  }
  return out ?? payload;
}

/** Cuts a message to at most MAX_ERROR_MESSAGE_BYTES UTF-8 bytes, on a character boundary. */
function boundMessage(message: string): string {
  if (message.length * 3 <= MAX_ERROR_MESSAGE_BYTES || utf8Length(message) <= MAX_ERROR_MESSAGE_BYTES) return message;
  let s = message.slice(0, MAX_ERROR_MESSAGE_BYTES - 3);
  while (utf8Length(s) > MAX_ERROR_MESSAGE_BYTES - 3) s = s.slice(0, Math.floor(s.length * 0.9));
  const last = s.charCodeAt(s.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) s = s.slice(0, -1);
  return `${s}...`;
}

/**
 * The payload of an error response. The message is truncated to MAX_ERROR_MESSAGE_BYTES;
 * `partition` is included only when given.
 */
export function errorPayload(code: ErrorCode, message: string, partition?: number): ErrorPayload {
  const p: ErrorPayload = { code, message: boundMessage(String(message)) };
  if (partition !== undefined) p.partition = partition;
  return p;
}

/** A RESPONSE frame carrying an error (ERROR flag set, plus any `extraFlags`). */
export function errorResponse(
  id: number,
  topologyVersion: number,
  code: ErrorCode,
  message: string,
  partition?: number,
  extraFlags = 0,
): ResponseFrame {
  return {
    kind: FrameKind.RESPONSE,
    id,
    flags: (extraFlags | ResponseFlag.ERROR) & 0xff,
    topologyVersion,
    payload: errorPayload(code, message, partition),
  };
}

/** A HANDSHAKE_ERROR frame (the node closes the connection after sending it). */
export function handshakeError(code: ErrorCode, message: string): HandshakeErrorFrame {
  return { kind: FrameKind.HANDSHAKE_ERROR, body: { code, message: boundMessage(String(message)) } };
}

