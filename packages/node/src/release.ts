/**
 * The release of gridlink this node runs: announced in its lease (with the node-to-node wire
 * versions it speaks) and on /metrics, so an operator can see which nodes run which release
 * during a rolling upgrade (ADR 0060). Kept equal to package.json's version by a test.
 */
export const RELEASE = '0.1.0';
