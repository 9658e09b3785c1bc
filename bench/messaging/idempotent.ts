/**
 * Idempotent consumers (@gridlink/messaging) over JetStream: what de-duplication costs per message.
 * One stream of N messages, each with its own Nats-Msg-Id, read by three durable consumers in
 * turn, 16 messages in flight each:
 *   - plain: the handler does nothing, the message is acknowledged (the floor);
 *   - idempotent, fresh ids: IdempotentConsumer, every id new (lock + mark read, mark + unlock);
 *   - idempotent, every id a duplicate: a second consumer of the same stream and namespace.
 * Reported: messages/s, grid operations per message (the client's own count, exact), CPU µs per
 * message of this process (NATS + grid client) and of the grid process.
 *
 *   pnpm bench messaging                 # runs this as its last part
 *   MSG_IDEM_MESSAGES=3000 npx tsx bench/messaging/idempotent.ts   (after pnpm build, with
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json)
 */
import { pathToFileURL } from 'node:url';
import { GridClient } from '@gridlink/client';
import { IdempotentConsumer } from '@gridlink/messaging';
import { connect, headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager, StorageType, type JsMsg } from '@nats-io/jetstream';
import { processCpuUs, table } from '../shared/measure.js';
import { NatsCluster } from '@gridlink/testkit';
import { startCluster } from '../shared/processes.js';

const MESSAGES = Number(process.env.MSG_IDEM_MESSAGES ?? 3000);
const IN_FLIGHT = 16;

interface Row {
  variant: string;
  perSec: number;
  opsPerMsg: number;
  clientCpuUs: number;
  gridCpuUs: number;
  outcome: string;
}

async function drain(nc: NatsConnection, durable: string, handle: (m: JsMsg, done: () => void) => void | Promise<void>, expected: number): Promise<void> {
  const js = jetstream(nc);
  const consumer = await js.consumers.get('IDEM', durable);
  const messages = await consumer.consume({ max_messages: 256 });
  let handled = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const done = (): void => {
    if (++handled === expected) finish();
  };
  const inFlight = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const m of messages) {
      const p = Promise.resolve(handle(m, done));
      inFlight.add(p);
      const forget = (): void => void inFlight.delete(p);
      p.then(forget, forget);
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    }
  })();
  await all;
  messages.stop();
  await loop;
}

export async function idempotentBench(natsUrl: string, endpoints: string[], gridPid: number): Promise<string> {
  const nc = await connect({ servers: natsUrl });
  const grid = await GridClient.connect({ endpoints });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'IDEM', subjects: ['idem.>'], storage: StorageType.File });
    for (const durable of ['plain', 'fresh', 'dup']) {
      await jsm.consumers.add('IDEM', { durable_name: durable, ack_policy: AckPolicy.Explicit, ack_wait: nanos(30_000), max_ack_pending: 1024 });
    }
    const js = jetstream(nc);
    const body = new TextEncoder().encode(JSON.stringify({ order: 1, amount: 42 }));
    for (let i = 0; i < MESSAGES; i += 256) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(MESSAGES, i + 256); j++) {
        const h = headers();
        h.set('Nats-Msg-Id', `m-${j}`);
        batch.push(js.publish('idem.in', body, { headers: h }));
      }
      await Promise.all(batch);
    }

    const rows: Row[] = [];
    const measure = async (variant: string, durable: string, handle: (m: JsMsg, done: () => void) => void | Promise<void>, outcome: () => string): Promise<void> => {
      const ops0 = grid.stats().operations;
      const cpu0 = process.cpuUsage();
      const grid0 = processCpuUs(gridPid);
      const t0 = performance.now();
      await drain(nc, durable, handle, MESSAGES);
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      rows.push({
        variant,
        perSec: MESSAGES / seconds,
        opsPerMsg: (grid.stats().operations - ops0) / MESSAGES,
        clientCpuUs: (cpu.user + cpu.system) / MESSAGES,
        gridCpuUs: (processCpuUs(gridPid) - grid0) / MESSAGES,
        outcome: outcome(),
      });
    };

    await measure(
      'plain (ack only)',
      'plain',
      async (m, done) => {
        await m.ackAck();
        done();
      },
      () => '—',
    );
    const counts = { processed: 0, duplicate: 0, other: 0 };
    const ic = new IdempotentConsumer({ grid, name: 'bench' });
    const count = (o: string): void => {
      if (o === 'processed' || o === 'duplicate') counts[o]++;
      else counts.other++;
    };
    const noop = (): void => undefined;
    const tally = (): string => {
      const s = `${counts.processed} processed, ${counts.duplicate} duplicates, ${counts.other} other`;
      counts.processed = counts.duplicate = counts.other = 0;
      return s;
    };
    const idempotent = async (m: JsMsg, done: () => void): Promise<void> => {
      count(await ic.handleJetStream(m, noop));
      done();
    };
    await measure('idempotent, fresh ids', 'fresh', idempotent, tally);
    await measure('idempotent, every id a duplicate', 'dup', idempotent, tally);
    await ic.close();

    const header = `JetStream, ${MESSAGES} messages with distinct Nats-Msg-Id, ${IN_FLIGHT} in flight, trivial handler; grid: 3 nodes (one process), backups 1.\n\n`;
    return (
      header +
      table([
        ['consumer', 'messages/s', 'grid ops/message', 'client CPU µs/message', 'grid CPU µs/message', 'outcomes'],
        ...rows.map((r) => [r.variant, Math.round(r.perSec), r.opsPerMsg.toFixed(2), Math.round(r.clientCpuUs), Math.round(r.gridCpuUs), r.outcome]),
      ])
    );
  } finally {
    await grid.close();
    await nc.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const nats = await NatsCluster.start();
  const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 256 });
  try {
    console.log(await idempotentBench(nats.urls[0]!, cluster.endpoints, cluster.proc.pid!));
  } finally {
    await cluster.stop();
    await nats.close();
  }
}
