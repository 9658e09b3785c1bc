/**
 * Which node-to-node wire version two nodes speak (ADR 0060). Each node speaks a range of
 * versions; a node dialing another announces the newest it speaks, and when the other refuses
 * it (it runs an older release), reads the range the refusal names and dials again with the
 * newest version both speak. So the nodes of a cluster in the middle of a rolling upgrade keep
 * replicating to each other in both directions, whichever release each one runs.
 */
import { ALL_FEATURES } from '@gridlink/protocol';

/**
 * Version of the node-to-node wire (peer ops, their message forms and replies), announced in the
 * peer hello as `gridlink-peer/<version>`; the plain `gridlink-peer` of older nodes is version 1.
 * 2: batched records may ask for the compact all-OK ack (ADR 0035).
 */
export const PEER_WIRE_VERSION = 2;
/** Oldest peer wire version this node still answers correctly. */
export const MIN_PEER_WIRE_VERSION = 1;

/** Versions of the node-to-node wire a node speaks, both ends included. */
export interface WireRange {
  readonly min: number;
  readonly max: number;
}

/** The range this release speaks. */
export const OWN_WIRE_RANGE: WireRange = Object.freeze({ min: MIN_PEER_WIRE_VERSION, max: PEER_WIRE_VERSION });

/** Key of the range in ResolvedNodeOptions (a symbol: not an option users set, see withPeerWireRange). */
export const PEER_WIRE: unique symbol = Symbol('gridlink.peerWire');

const ranges = new WeakMap<object, WireRange>();

/**
 * Testing hook (`@gridlink/node/internal`): a node started with these options speaks `range`
 * instead of its own, as a node of another release would. Returns `options`.
 */
export function withPeerWireRange<T extends object>(options: T, range: WireRange): T {
  if (!(Number.isSafeInteger(range.min) && Number.isSafeInteger(range.max) && range.min >= 1 && range.min <= range.max)) {
    throw new RangeError(`a wire range is 1 <= min <= max, got ${range.min}..${range.max}`);
  }
  ranges.set(options, { min: range.min, max: range.max });
  return options;
}

/** The range set for `options` with withPeerWireRange, else this release's. */
export function peerWireRangeOf(options: object): WireRange {
  return ranges.get(options) ?? OWN_WIRE_RANGE;
}

/** Key of the feature bits a node grants in ResolvedNodeOptions (a symbol, see withNodeFeatures). */
export const NODE_FEATURES: unique symbol = Symbol('gridlink.nodeFeatures');

const featureSets = new WeakMap<object, number>();

/**
 * Testing hook (`@gridlink/node/internal`): a node started with these options grants only
 * `features` (Feature bits) in its handshakes, as a node of an older release that lacks the others
 * would. Returns `options`.
 */
export function withNodeFeatures<T extends object>(options: T, features: number): T {
  featureSets.set(options, features >>> 0);
  return options;
}

/** The feature bits set for `options` with withNodeFeatures, else this release's. */
export function nodeFeaturesOf(options: object): number {
  return featureSets.get(options) ?? ALL_FEATURES;
}

/** The refusal a node sends a peer whose version it does not speak; peers of later releases read the range back from it. */
export function wireRefusal(announced: string, own: WireRange): string {
  return `peer wire version ${announced} is not supported: this node speaks ${own.min}..${own.max}`;
}

/** The range named by a refusal (wireRefusal's text, what every release since version 2 sends), or null. */
export function refusedRange(detail: string): WireRange | null {
  const m = /peer wire version .* is not supported: this node speaks ([1-9][0-9]{0,5})\.\.([1-9][0-9]{0,5})/.exec(detail);
  if (m === null) return null;
  const min = Number(m[1]);
  const max = Number(m[2]);
  return min <= max ? { min, max } : null;
}

/** The newest version both ranges hold, or null when they do not overlap. */
export function commonVersion(own: WireRange, theirs: WireRange): number | null {
  const v = Math.min(own.max, theirs.max);
  return v >= Math.max(own.min, theirs.min) ? v : null;
}
