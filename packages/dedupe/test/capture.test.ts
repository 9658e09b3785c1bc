/**
 * captureResponse on a real HTTP server (127.0.0.1), with a ticket the test controls: what is
 * stored, what goes out while and after end() is held, nested captures, a client that goes away.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { captureResponse, type CapturedResponse, type Ticket } from '../src/index.js';

/** A ticket whose complete() resolves when the test says so. */
class TestTicket {
  completed: CapturedResponse[] = [];
  abandoned: string[] = [];
  storeAfterSend = false;
  private release: (() => void)[] = [];
  complete(res: CapturedResponse): Promise<void> {
    this.completed.push(res);
    return new Promise((resolve) => this.release.push(resolve));
  }
  abandon(reason: string): Promise<void> {
    this.abandoned.push(reason);
    return Promise.resolve();
  }
  /** Lets every held complete() resolve. */
  store(): void {
    for (const r of this.release.splice(0)) r();
  }
  get waiting(): number {
    return this.release.length;
  }
}

const asTicket = (t: TestTicket): Ticket<unknown> => t as unknown as Ticket<unknown>;

let server: Server | null = null;
afterEach(async () => {
  const s = server;
  server = null;
  if (s !== null) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  server = createServer(handler);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

interface Got {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(port: number): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', method: 'POST' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('captureResponse', () => {
  it('sends what it stored: header changes made while end() is held are undone, whatever they were', async () => {
    const names = ['x-a', 'x-b', 'x-c', 'content-type', 'location'];
    const header = fc.tuple(fc.constantFrom(...names), fc.oneof(fc.constantFrom('v1', 'v2', 'other'), fc.array(fc.constantFrom('m', 'n'), { minLength: 1, maxLength: 2 })));
    const change = fc.oneof(
      fc.record({ op: fc.constant('set' as const), h: header }),
      fc.record({ op: fc.constant('remove' as const), name: fc.constantFrom(...names) }),
      fc.record({ op: fc.constant('status' as const), status: fc.constantFrom(404, 500) }),
    );
    type Change = { op: 'set'; h: [string, string | string[]] } | { op: 'remove'; name: string } | { op: 'status'; status: number };
    let plan: { before: [string, string | string[]][]; during: Change[] } = { before: [], during: [] };
    let ticket = new TestTicket();
    const port = await serve((_req, res) => {
      captureResponse(res, asTicket(ticket), 1024);
      res.statusCode = 201;
      for (const [k, v] of plan.before) res.setHeader(k, v);
      res.end('body!');
      // The response is held now: whatever changes meanwhile must not go out.
      for (const c of plan.during) {
        if (c.op === 'set') res.setHeader(c.h[0], c.h[1]);
        else if (c.op === 'remove') res.removeHeader(c.name);
        else res.statusCode = c.status;
      }
    });
    await fc.assert(
      fc.asyncProperty(fc.array(header, { maxLength: 4 }), fc.array(change, { maxLength: 5 }), async (before, during) => {
        plan = { before, during };
        ticket = new TestTicket();
        const got = get(port);
        await until(() => ticket.waiting === 1, 'the held end()');
        const stored = ticket.completed[0]!;
        ticket.store();
        const r = await got;
        expect(r.status).toBe(201);
        expect(stored.status).toBe(201);
        expect(r.body).toBe('body!');
        expect(Buffer.from(stored.body!).toString()).toBe('body!');
        const expected = new Map<string, string | string[]>();
        for (const [k, v] of before) expected.set(k, v);
        for (const name of names) {
          const want = expected.get(name);
          const sent = r.headers[name];
          if (want === undefined) {
            expect(sent).toBeUndefined();
            expect(stored.headers[name]).toBeUndefined();
          } else {
            // Node joins repeated response headers into one line per value; the client's parser
            // gives the x- ones joined by ", " and content-type / location as the first only.
            const asSent = Array.isArray(want) ? (name === 'content-type' || name === 'location' ? want[0] : want.join(', ')) : want;
            expect(sent).toBe(asSent);
            expect(stored.headers[name]).toEqual(want);
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it('nested captures of one response each store it and the response goes out once both have', async () => {
    const outer = new TestTicket();
    const inner = new TestTicket();
    const port = await serve((_req, res) => {
      captureResponse(res, asTicket(inner), 1024);
      captureResponse(res, asTicket(outer), 1024);
      res.statusCode = 200;
      res.setHeader('x-n', '1');
      res.end('twice');
    });
    let done = false;
    const got = get(port).finally(() => (done = true));
    await until(() => outer.waiting === 1, 'the outer capture to hold end()');
    expect(inner.completed).toHaveLength(0);
    outer.store();
    await until(() => inner.waiting === 1, 'the inner capture to hold end()');
    expect(done).toBe(false);
    inner.store();
    const r = await got;
    expect(r).toMatchObject({ status: 200, body: 'twice' });
    for (const t of [outer, inner]) {
      expect(t.completed).toHaveLength(1);
      expect(Buffer.from(t.completed[0]!.body!).toString()).toBe('twice');
      expect(t.completed[0]!.headers['x-n']).toBe('1');
      expect(t.abandoned).toEqual([]);
    }
  });

  it('a client that goes away before end() abandons every capture; one that got its answer abandons none', async () => {
    const tickets: TestTicket[] = [];
    let answer = false;
    const port = await serve((_req, res) => {
      const a = new TestTicket();
      const b = new TestTicket();
      a.storeAfterSend = b.storeAfterSend = true;
      tickets.push(a, b);
      captureResponse(res, asTicket(a), 1024);
      captureResponse(res, asTicket(b), 1024);
      if (answer) res.end('ok');
    });
    // Goes away without an answer.
    await new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/', method: 'POST' });
      req.on('error', () => resolve());
      req.end();
      void until(() => tickets.length === 2, 'the handler').then(() => req.destroy());
    });
    await until(() => tickets.every((t) => t.abandoned.length === 1), 'both tickets abandoned');
    answer = true;
    const r = await get(port);
    expect(r.body).toBe('ok');
    const [, , c, d] = tickets;
    await until(() => c!.completed.length === 1 && d!.completed.length === 1, 'both stored');
    expect(c!.abandoned).toEqual([]);
    expect(d!.abandoned).toEqual([]);
  });
});
