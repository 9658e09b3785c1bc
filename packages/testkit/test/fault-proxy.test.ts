import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FaultProxy, SilentServer, loopbackAliasesUsable } from '@gridlink/testkit';

// Sources other than 127.0.0.1 need the rest of 127/8 to be loopback (Linux); skipped elsewhere.
const aliases = await loopbackAliasesUsable();

/** A target server that records what it receives and echoes it back. */
async function echoServer() {
  const received: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  let onData: (() => void) | null = null;
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d: Buffer) => {
      received.push(d);
      s.write(d);
      onData?.();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    sockets,
    received: () => Buffer.concat(received),
    waitFor: async (pred: () => boolean) => {
      while (!pred()) await new Promise<void>((r) => (onData = r));
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function connect(port: number, localAddress?: string): Promise<{ socket: net.Socket; got: () => Buffer; waitFor: (n: number) => Promise<void>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', ...(localAddress !== undefined ? { localAddress } : {}) });
    const chunks: Buffer[] = [];
    let wake: (() => void) | null = null;
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      wake?.();
    });
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.once('connect', () => {
      // The proxy speaks the gridlink framing on the client-to-node direction: MAGIC first.
      socket.write(MAGIC);
      resolve({
        socket,
        got: () => Buffer.concat(chunks),
        waitFor: async (n: number) => {
          while (Buffer.concat(chunks).length < n) await new Promise<void>((r) => (wake = r));
        },
        closed,
      });
    });
    socket.once('error', reject);
  });
}

const MAGIC = Buffer.from('GLNK');
/** A non-request frame carrying one tag byte (kind 4 = RESPONSE-shaped, never dropped). */
const f = (tag: number): Buffer => frame(4, tag);
const tags = (b: Buffer): number[] => {
  const out: number[] = [];
  for (let i = 0; i + 6 <= b.length; i += 6) out.push(b[i + 5] as number);
  return out;
};

/** A frame as the gridlink codec lays it out: u32 length of what follows, kind byte, body. */
function frame(kind: number, tag: number): Buffer {
  const b = Buffer.alloc(4 + 2);
  b.writeUInt32BE(2, 0);
  b[4] = kind;
  b[5] = tag;
  return b;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const target = await echoServer();
  const proxy = await FaultProxy.start({ target: `127.0.0.1:${target.port}` });
  cleanups.push(() => target.close(), () => proxy.close());
  return { target, proxy };
}

describe('FaultProxy', () => {
  it('forwards both ways when healthy', async () => {
    const { proxy } = await setup();
    const c = await connect(proxy.port);
    c.socket.write(Buffer.concat([f(1), f(2)]));
    await c.waitFor(4 + 12);
    expect(tags(c.got().subarray(4))).toEqual([1, 2]);
    c.socket.destroy();
  });

  it('delay holds data back at least the configured time, keeping order', async () => {
    const { proxy } = await setup();
    proxy.delay(60);
    const c = await connect(proxy.port);
    const t0 = performance.now();
    c.socket.write(f(1));
    c.socket.write(f(2));
    await c.waitFor(4 + 12);
    // Both directions are delayed: the echo takes at least two delays.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(110);
    expect(tags(c.got().subarray(4))).toEqual([1, 2]);
    c.socket.destroy();
  });

  it('blackhole swallows traffic without closing; heal resumes forwarding', async () => {
    const { target, proxy } = await setup();
    const c = await connect(proxy.port);
    c.socket.write(f(1));
    await c.waitFor(4 + 6);
    proxy.blackhole(true);
    c.socket.write(f(2));
    // A second connection is accepted but never reaches the target.
    const c2 = await connect(proxy.port);
    expect(proxy.stats().accepted).toBe(2);
    while (proxy.stats().swallowedToNode < 6) await new Promise<void>((r) => setImmediate(r));
    proxy.heal();
    c.socket.write(f(3));
    await c.waitFor(4 + 12);
    expect(tags(c.got().subarray(4))).toEqual([1, 3]);
    expect(tags(target.received().subarray(4))).toEqual([1, 3]);
    expect(target.sockets.size).toBe(1);
    c.socket.destroy();
    c2.socket.destroy();
  });

  it('reset destroys current connections', async () => {
    const { proxy } = await setup();
    const c = await connect(proxy.port);
    proxy.reset();
    await c.closed;
    expect(proxy.stats().open).toBe(0);
  });

  it('refuse closes new connections at once', async () => {
    const { proxy } = await setup();
    proxy.refuse(true);
    const c = await connect(proxy.port);
    await c.closed;
  });

  it('half-open stops one direction only', async () => {
    const { target, proxy } = await setup();
    const c = await connect(proxy.port);
    await c.waitFor(4);
    proxy.halfOpen('toClient');
    c.socket.write(f(7));
    await target.waitFor(() => target.received().length === 4 + 6);
    while (proxy.stats().swallowedToClient < 6) await new Promise<void>((r) => setImmediate(r));
    proxy.heal();
    c.socket.write(f(8));
    await c.waitFor(4 + 6);
    // The echo of frame 7 was swallowed; only frame 8 came back.
    expect(tags(c.got().subarray(4))).toEqual([8]);
    expect(tags(target.received().subarray(4))).toEqual([7, 8]);
    c.socket.destroy();
  });

  it('drops every n-th REQUEST frame after MAGIC, passing other frames and split chunks intact', async () => {
    const { target, proxy } = await setup();
    proxy.dropEveryNthRequest(3);
    const c = await connect(proxy.port);
    const magic = MAGIC;
    const frames = [frame(0, 0), ...Array.from({ length: 9 }, (_, i) => frame(3, i + 1)), frame(1, 99)];
    const stream = Buffer.concat(frames);
    // Write in awkward pieces to exercise reassembly.
    for (let i = 0; i < stream.length; i += 5) c.socket.write(stream.subarray(i, i + 5));
    const expected = Buffer.concat([magic, frame(0, 0), ...[1, 2, 4, 5, 7, 8].map((t) => frame(3, t)), frame(1, 99)]);
    await target.waitFor(() => target.received().length >= expected.length);
    expect(target.received().equals(expected)).toBe(true);
    expect(proxy.stats().droppedRequests).toBe(3);
    c.socket.destroy();
  });

  it.skipIf(!aliases)('blackholeFrom silences one source address only, existing and new connections; turning it off resumes', async () => {
    const { target, proxy } = await setup();
    const cut = await connect(proxy.port, '127.0.1.5');
    const other = await connect(proxy.port, '127.0.1.6');
    cut.socket.write(f(1));
    other.socket.write(f(1));
    await cut.waitFor(4 + 6);
    await other.waitFor(4 + 6);
    proxy.blackholeFrom('127.0.1.5');
    expect(proxy.blackholedSources).toEqual(['127.0.1.5']);
    const cutNew = await connect(proxy.port, '127.0.1.5');
    cutNew.socket.write(f(9));
    cut.socket.write(f(2));
    other.socket.write(f(2));
    await other.waitFor(4 + 12);
    while (proxy.stats().swallowedToNode < 4 + 6 + 6) await new Promise<void>((r) => setImmediate(r));
    // The cut source got nothing back and reached nothing; the other source went on as before.
    expect(tags(cut.got().subarray(4))).toEqual([1]);
    expect(tags(other.got().subarray(4))).toEqual([1, 2]);
    expect(cutNew.got().length).toBe(0);
    expect(target.sockets.size).toBe(2);
    expect(cut.socket.destroyed).toBe(false);
    proxy.blackholeFrom('127.0.1.5', false);
    cut.socket.write(f(3));
    await cut.waitFor(4 + 12);
    expect(tags(cut.got().subarray(4))).toEqual([1, 3]);
    // resetFrom ends that source's connections only.
    proxy.resetFrom('127.0.1.5');
    await cut.closed;
    await cutNew.closed;
    expect(other.socket.destroyed).toBe(false);
    other.socket.write(f(4));
    await other.waitFor(4 + 18);
    other.socket.destroy();
  });

  it.skipIf(!aliases)('blackholeFrom: a connection gets through exactly when its source was not cut when it was accepted and is not cut now (property)', async () => {
    const { proxy } = await setup();
    const sources = ['127.0.1.11', '127.0.1.12', '127.0.1.13', '127.0.1.14'];
    await fc.assert(
      fc.asyncProperty(fc.subarray(sources), fc.subarray(sources), async (cutBefore, cutAfter) => {
        proxy.heal();
        for (const a of cutBefore) proxy.blackholeFrom(a);
        const accepted = proxy.stats().accepted;
        const conns = await Promise.all(sources.map((a) => connect(proxy.port, a)));
        // The client's connect can complete before the proxy's accept handler ran.
        while (proxy.stats().accepted < accepted + sources.length) await new Promise<void>((r) => setImmediate(r));
        proxy.heal();
        for (const a of cutAfter) proxy.blackholeFrom(a);
        expect(proxy.blackholedSources.sort()).toEqual([...cutAfter].sort());
        for (const c of conns) c.socket.write(f(5));
        const through = sources.map((a) => !cutBefore.includes(a) && !cutAfter.includes(a));
        // Those that get through see MAGIC and the frame echoed; a connection from an address
        // never cut, written last, is the barrier after which the others would have answered.
        await Promise.all(conns.map((c, i) => (through[i] ? c.waitFor(4 + 6) : Promise.resolve())));
        const barrier = await connect(proxy.port, '127.0.1.99');
        barrier.socket.write(f(6));
        await barrier.waitFor(4 + 6);
        conns.forEach((c, i) => {
          if (through[i]) expect(tags(c.got().subarray(4)), sources[i]).toEqual([5]);
          // Cut later: at most the MAGIC echo from before the cut; accepted while cut: nothing at all.
          else expect(c.got().length, sources[i]).toBeLessThanOrEqual(cutBefore.includes(sources[i]!) ? 0 : 4);
        });
        for (const c of [...conns, barrier]) c.socket.destroy();
      }),
      { numRuns: 15 },
    );
  });

  it('rejects nonsense fault settings', async () => {
    const { proxy } = await setup();
    expect(() => proxy.blackholeFrom('node-2')).toThrow(TypeError);
    expect(() => proxy.dropEveryNthRequest(1)).toThrow(RangeError);
    expect(() => proxy.delay(-1)).toThrow(RangeError);
  });
});

describe('SilentServer', () => {
  it('accepts and never answers', async () => {
    const s = await SilentServer.start();
    cleanups.push(() => s.close());
    const c = await connect(s.port);
    await new Promise<void>((r) => {
      const check = (): void => (s.connections === 1 ? r() : void setImmediate(check));
      check();
    });
    expect(c.got().length).toBe(0);
    c.socket.destroy();
  });
});
