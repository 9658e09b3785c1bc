export { murmur3x86_32 } from './murmur3.js';
export {
  encodeKey,
  partitionOf,
  partitionOfBytes,
  hashKey,
  KeyTag,
  MAX_KEY_DEPTH,
  type GridKey,
} from './encoding.js';
export { decodeKey } from './decoding.js';
export {
  rankOwners,
  computeAssignment,
  diffAssignments,
  nodeHash,
  tieHash,
  ownerScore,
  compareNodeIds,
  type NodeSpec,
  type Assignment,
  type AssignmentChange,
  type ComputeAssignmentOptions,
} from './ownership.js';
export { InvalidKeyError, AffinityArgumentError } from './errors.js';
