/**
 * What the coordinator's last step was computed from, so that a tick can tell cheaply whether a
 * step now could come out any different. A step walks every partition (a few hundred ms at 65,536
 * partitions); a tick comes every 50 ms. The tick used to build a key string of the alive leases
 * (each node's `synced` and `caughtUp` stringified, tens of thousands of partitions while a node
 * pulls) and compare it with the last one; now each lease is compared field by field with the one
 * the step saw, once per renewal (a renewal is a new record object, usually with the same content),
 * and by identity on the ticks in between.
 */
import type { LeaseRecord } from '../control/topology.js';

const NONE: Readonly<Record<string, number>> = Object.freeze({});

/**
 * Two partition → version maps are the same to the step's key: the same keys in the same order
 * with the same versions (what equal `JSON.stringify` of them says; keys that are partition
 * numbers enumerate in numeric order whatever order they were set in).
 */
function sameVersions(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): boolean {
  if (a === b) return true;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i]!;
    if (k !== kb[i] || a[k] !== b[k]) return false;
  }
  return true;
}

/**
 * Whether two lease records are the same in what decides if the coordinator steps: id, epoch,
 * leaving, `synced` and `caughtUp` (absent: empty). Renewals alone change none of it.
 */
export function sameStepInputs(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    a.id === b.id &&
    a.epoch === b.epoch &&
    (a.leaving === true) === (b.leaving === true) &&
    sameVersions(a.synced, b.synced) &&
    sameVersions(a.caughtUp ?? NONE, b.caughtUp ?? NONE)
  );
}

/**
 * The rest of what the step reads of a lease: where the node is (host, port, zone, weight). A
 * node's address changes with its epoch, so it does not decide whether to step, but a step that
 * found nothing to write is taken as the answer for later ticks only while it is unchanged too.
 */
export function sameAddress(a: LeaseRecord, b: LeaseRecord): boolean {
  return a.host === b.host && a.port === b.port && a.zone === b.zone && a.weight === b.weight;
}

/**
 * How a tick's inputs compare with the last step's: `changed` (the topology version, the cache
 * rules, the alive nodes or their order, or a lease's step inputs); `addresses` (only a lease's
 * address); `same`.
 */
export type BasisComparison = 'changed' | 'addresses' | 'same';

export class StepBasis {
  /** The step computed on this basis found nothing to write. */
  empty = false;

  constructor(
    readonly version: number,
    readonly cachesJson: string,
    alive: readonly LeaseRecord[],
  ) {
    this.leases = alive.slice();
  }

  private readonly leases: LeaseRecord[];

  /**
   * Compares a tick's inputs with this basis. A lease found the same in every field replaces the
   * one held, so that the next ticks compare it by identity until its next renewal.
   */
  compare(version: number, cachesJson: string, alive: readonly LeaseRecord[]): BasisComparison {
    if (version !== this.version || cachesJson !== this.cachesJson || alive.length !== this.leases.length) return 'changed';
    let result: BasisComparison = 'same';
    for (let i = 0; i < alive.length; i++) {
      const was = this.leases[i]!;
      const now = alive[i]!;
      if (was === now) continue;
      if (!sameStepInputs(was, now)) return 'changed';
      if (sameAddress(was, now)) this.leases[i] = now;
      else result = 'addresses';
    }
    return result;
  }
}
