/**
 * Forwarding a request to the partition's primary drops fields of features that primary did not
 * grant on the peer connection (an older node refuses fields it does not know): `ifAbsent` of
 * LOCK_TRY_ACQUIRE_GET reaches a primary without LOCK_GET_IF_ABSENT as a plain acquire-get. The
 * peer link decides when it sends, once the primary's handshake is known. Then the same through
 * a real cluster, forwarded by a node that is not the primary.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { LocalCluster } from '@gridlink/node';
import { ALL_FEATURES, Feature, Op } from '@gridlink/protocol';
import { ScriptedNode } from '@gridlink/testkit';
import { peerClientTo } from './helpers/peer.js';
import { TestConnection } from './helpers/client.js';

describe('forwarding and feature bits', () => {
  it('a peer link drops ifAbsent from a forwarded acquire-get when the primary did not grant LOCK_GET_IF_ABSENT, and keeps it otherwise', async () => {
    for (const [features, kept] of [
      [Feature.TOPOLOGY_PUSH | Feature.LOCKS, false],
      [ALL_FEATURES, true],
    ] as const) {
      const node = new ScriptedNode('primary', 8, () => ({ payload: { ok: true, result: { acquired: true, token: 1, value: null } } }), 'gridlink');
      node.features = features;
      await node.start();
      const peer = peerClientTo(node.port, 'primary');
      try {
        const payload = { cache: 'c', key: new Uint8Array([1]), seq: 1, leaseMs: 100, ifAbsent: true };
        // Sent before the link is up: decided once the primary's handshake is known.
        await peer.request(Op.PEER_FORWARD, { op: Op.LOCK_TRY_ACQUIRE_GET, payload, session: 's' }, 2000);
        // Another op is left alone; the caller's payload is never changed.
        await peer.request(Op.PEER_FORWARD, { op: Op.CACHE_PUT, payload: { ...payload, value: payload.key }, session: 's' }, 2000);
        const sent = node.requests.map((r) => r.payload as { op: Op; payload: Record<string, unknown> });
        expect(sent.map((m) => 'ifAbsent' in m.payload)).toEqual([kept, true]);
        expect(payload.ifAbsent).toBe(true);
        if (!kept) expect(Object.keys(sent[0]!.payload).sort()).toEqual(['cache', 'key', 'leaseMs', 'seq']);
      } finally {
        peer.destroy();
        await node.close();
      }
    }
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
