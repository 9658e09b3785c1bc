import { MUTATING_OPS, Op } from '@gridlink/protocol';
import { NodeStore, type StoreOptions } from '../src/store/index.js';

export class FakeClock {
  constructor(public t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();
export const b = (s: string): Uint8Array => enc.encode(s);
export const s = (u: Uint8Array | null | undefined): string | null => (u == null ? null : dec.decode(u));

export function makeStore(opts: StoreOptions = {}): { store: NodeStore; clock: FakeClock } {
  const clock = new FakeClock();
  return { store: new NodeStore({ clock, ...opts }), clock };
}

/** Every mutating cache op (the protocol's mutating ops other than locks), for generators. */
export const CACHE_MUTATIONS: readonly Op[] = [...MUTATING_OPS].filter((op) => op < Op.LOCK_TRY_ACQUIRE);
