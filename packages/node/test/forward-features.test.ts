/**
 * Forwarding a request to the partition's primary drops fields of features that primary did not
 * grant on the peer connection (an older node refuses fields it does not know): `ifAbsent` of
 * LOCK_TRY_ACQUIRE_GET reaches a primary without LOCK_GET_IF_ABSENT as a plain acquire-get.
 * Then the same through a real cluster, forwarded by a node that is not the primary.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { LocalCluster } from '@gridlink/node';
import { ALL_FEATURES, Feature, Op } from '@gridlink/protocol';
import { Forwarder } from '../src/requests/forward.js';
import type { PeerLinks } from '../src/peers/links.js';
import { TestConnection } from './helpers/client.js';

describe('forwarding and feature bits', () => {
  it('drops ifAbsent for a primary that did not grant LOCK_GET_IF_ABSENT (or is not connected yet), keeps it otherwise', async () => {
    const sent: { op: Op; payload: Record<string, unknown> }[] = [];
    let features: number | undefined;
    const peer = {
      get features() {
        return features;
      },
      request: (_op: Op, msg: { op: Op; payload: Record<string, unknown> }) => {
        sent.push(msg);
        return Promise.resolve({ ok: true, result: { acquired: true, token: 1, value: null } });
      },
    };
    const fwd = new Forwarder({ peer: () => peer } as unknown as PeerLinks, 1000);
    const payload = { cache: 'c', key: new Uint8Array([1]), seq: 1, leaseMs: 100, ifAbsent: true };
    for (const f of [undefined, Feature.TOPOLOGY_PUSH | Feature.LOCKS, ALL_FEATURES]) {
      features = f;
      await fwd.forward('n2', 0, Op.LOCK_TRY_ACQUIRE_GET, payload, 's');
    }
    expect(sent.map((m) => 'ifAbsent' in m.payload)).toEqual([false, false, true]);
    // The caller's payload is left as it was (a retry may go to a node that grants it).
    expect(payload.ifAbsent).toBe(true);
    expect(sent[0]!.payload).toEqual({ cache: 'c', key: payload.key, seq: 1, leaseMs: 100 });
    // Other ops pass untouched.
    features = undefined;
    await fwd.forward('n2', 0, Op.CACHE_PUT, { cache: 'c', key: payload.key, seq: 2, value: payload.key, ifAbsent: true }, 's');
    expect('ifAbsent' in sent[3]!.payload).toBe(true);
  });

  describe('through a real cluster', () => {
    let cluster: LocalCluster | undefined;
    let raw: TestConnection | undefined;
    afterEach(async () => {
      raw?.close();
      raw = undefined;
      await cluster?.stop();
      cluster = undefined;
    });

    it('a forwarded ifAbsent acquire-get on a present entry is a read at the primary', async () => {
      const P = 8;
      const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P });
      cluster = c;
      const key = encodeKey('job:f');
      const p = partitionOf('job:f', P);
      const primary = c.primaryOf(p);
      const other = c.nodeIds.findIndex((id) => id !== primary);
      raw = await TestConnection.connect(c.endpoints[other]!);
      let seq = 0;
      // Through the non-primary: a plain acquire-get (forwarded), then the stored entry.
      const got = await raw.call<{ acquired: boolean; token: number }>(Op.LOCK_TRY_ACQUIRE_GET, { cache: 'state', key, seq: ++seq, leaseMs: 10_000 });
      expect(got.acquired).toBe(true);
      expect(await raw.call(Op.LOCK_PUT_RELEASE, { cache: 'state', key, seq: ++seq, token: got.token, value: new Uint8Array([7]) })).toEqual({ released: true });
      const read = await raw.call<{ acquired: boolean; value: Uint8Array | null }>(Op.LOCK_TRY_ACQUIRE_GET, { cache: 'state', key, seq: ++seq, leaseMs: 10_000, ifAbsent: true });
      expect(read.acquired).toBe(false);
      expect([...read.value!]).toEqual([7]);
      // Not taken: a plain attempt gets the lock, with a larger token.
      const next = await raw.call<{ acquired: boolean; token: number }>(Op.LOCK_TRY_ACQUIRE, { name: key, seq: ++seq, leaseMs: 10_000 });
      expect(next.acquired).toBe(true);
      expect(next.token).toBeGreaterThan(got.token);
    });
  });
});
