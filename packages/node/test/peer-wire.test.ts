/**
 * The node-to-node wire (ADR 0035): the peer hello carries a wire version, a peer of a version
 * this node does not speak is refused at the handshake with a clear error, and a batch of
 * replicated records is answered with the compact `{ ok: n }` only when every record was OK and
 * the sender asked for it (otherwise with one reply per record, in order).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Op, WireClient } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { PEER_CLIENT_NAME, PEER_WIRE_VERSION, encodeReplicate, peerWireVersion } from '@gridlink/node/internal';
import type { ReplicationRecord } from '../src/store/index.js';

describe('peerWireVersion', () => {
  it('reads the version of a versioned peer name, 1 for the plain one, null for other clients', () => {
    expect(peerWireVersion(PEER_CLIENT_NAME)).toBe(1);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 999_999 }), (v) => {
        expect(peerWireVersion(`${PEER_CLIENT_NAME}/${v}`)).toBe(v);
      }),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (name) => {
        const v = peerWireVersion(name);
        if (!name.startsWith(PEER_CLIENT_NAME)) expect(v).toBeNull();
        else if (name !== PEER_CLIENT_NAME && !name.startsWith(`${PEER_CLIENT_NAME}/`)) expect(v).toBeNull();
      }),
    );
    for (const bad of ['gridlink-peer/', 'gridlink-peer/0', 'gridlink-peer/x', 'gridlink-peer/2.1', 'gridlink-peer/-1', 'gridlink-peer/02']) {
      expect(peerWireVersion(bad)).toBeNaN();
    }
    expect(peerWireVersion('gridlink-peers')).toBeNull();
  });
});

describe('peer wire on a running node', () => {
  let cluster: LocalCluster;
  const clients: WireClient[] = [];
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 2, backups: 1, partitions: 4 });
    await cluster.waitForStable();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await cluster.stop();
  });

  function connect(endpoint: string, clientName: string): WireClient {
    const [host, port] = endpoint.split(':');
    const c = new WireClient({ host: host!, port: Number(port), sessionId: `peer:test`, clientName, handshakeTimeoutMs: 5000 });
    clients.push(c);
    return c;
  }

  it('refuses a peer hello of a wire version it does not speak, naming the versions', async () => {
    for (const name of [`${PEER_CLIENT_NAME}/${PEER_WIRE_VERSION + 1}`, `${PEER_CLIENT_NAME}/x`]) {
      const c = connect(cluster.endpoints[0]!, name);
      await expect(c.ready).rejects.toMatchObject({ code: 'GRID_WIRE_REFUSED', message: expect.stringMatching(/peer wire version .* not supported: this node speaks 1\.\.2/) });
    }
    // the node keeps serving peers of its own version and of version 1
    for (const name of [`${PEER_CLIENT_NAME}/${PEER_WIRE_VERSION}`, PEER_CLIENT_NAME]) {
      const c = connect(cluster.endpoints[0]!, name);
      await c.ready;
      expect(c.open).toBe(true);
    }
  });

  it('answers an all-OK batch with { ok: n } when asked, else one reply per record in order', async () => {
    const t = cluster.topology();
    const p = 0;
    const [primary, backup] = t.owners[p]!;
    expect(backup).toBeDefined();
    const epoch = t.members[backup!]!.epoch;
    const v = t.version;
    const c = connect(cluster.endpointOf(backup!), `${PEER_CLIENT_NAME}/${PEER_WIRE_VERSION}`);
    await c.ready;
    const probe = (await c.request(Op.PEER_REPLICATE, { p, v, from: primary, epoch, probe: true })) as { s: string; counter: number };
    expect(probe.s).toBe('ok');
    const rec = (counter: number): Uint8Array => {
      const r: ReplicationRecord = {
        v: 1,
        counter,
        at: Date.now(),
        effects: [{ t: 'put', cache: 'peer-wire', key: new Uint8Array([counter & 0xff]), value: new Uint8Array([1, 2, 3]), expireAt: 0 }],
        dedup: null,
      };
      return encodeReplicate(p, v, primary!, epoch, r)!;
    };
    const c0 = probe.counter;
    const batch = [rec(c0 + 1), rec(c0 + 2), rec(c0 + 3)];
    expect(await c.request(Op.PEER_REPLICATE, { batch, compactAck: true })).toEqual({ ok: 3 });
    // Already applied: OK again (a resend is harmless); without compactAck, the list.
    expect(await c.request(Op.PEER_REPLICATE, { batch })).toEqual({ batch: [{ s: 'ok' }, { s: 'ok' }, { s: 'ok' }] });
    // A record that skips a counter is a gap: the answer is the list, whatever was asked.
    expect(await c.request(Op.PEER_REPLICATE, { batch: [rec(c0 + 4), rec(c0 + 10)], compactAck: true })).toEqual({ batch: [{ s: 'ok' }, { s: 'gap' }] });
    // A sender that is not the primary is told so, per record.
    const notPrimary = encodeReplicate(p, v, backup!, epoch, { v: 1, counter: c0 + 5, at: 0, effects: [{ t: 'put', cache: 'x', key: new Uint8Array(1), value: new Uint8Array(1), expireAt: 0 }], dedup: null })!;
    const r = (await c.request(Op.PEER_REPLICATE, { batch: [notPrimary], compactAck: true })) as { batch: { s: string }[] };
    expect(r.batch).toHaveLength(1);
    expect(r.batch[0]!.s).not.toBe('ok');
  });
});
