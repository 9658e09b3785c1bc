/**
 * The control plane under faults: a 3-server nats-server JetStream cluster, an R3 KV bucket, one
 * put every 50 ms through NatsControlPlane, and a watch on a second connection. For each fault
 * (kill -9 of the stream leader, SIGSTOP of the leader for 5 s, kill -9 of a follower), repeated:
 * how long writes stalled (longest gap between acknowledged puts), how many puts failed and with
 * what, the longest delay from a put's acknowledgement to its watch event, and whether the watch
 * missed or reordered an acknowledged revision.
 *
 *   pnpm bench cluster                         # everything in bench/cluster
 *   tsx bench/cluster/nats-faults.ts [reps]    # just this table (default 2 repetitions)
 */
import { NatsControlPlane, type KvEvent } from '@gridlink/node';
import { NatsCluster, type NatsServer } from '@gridlink/testkit';

type Fault = 'kill -9 leader' | 'SIGSTOP leader 5 s' | 'kill -9 follower';

interface Row {
  fault: Fault;
  rep: number;
  stallMs: number;
  failed: number;
  firstError: string;
  watchMaxDelayMs: number;
  missed: number;
  reordered: number;
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function leaderOf(cp: NatsControlPlane): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const l = (await cp.bucketStatus().catch(() => ({ leader: undefined }))).leader;
    if (l) return l;
    await pause(50);
  }
  throw new Error('no stream leader');
}

async function runOnce(fault: Fault, rep: number): Promise<Row> {
  const nats = await NatsCluster.start({ servers: 3 });
  try {
    const writer = await NatsControlPlane.connect({ servers: nats.urls, bucket: 'bench', replicas: 3, connectTimeoutMs: 30_000 });
    const watcher = await NatsControlPlane.connect({ servers: [...nats.urls].reverse(), bucket: 'bench', replicas: 3, connectTimeoutMs: 30_000 });
    const leaderName = await leaderOf(writer);
    const leader = nats.servers.find((s) => s.name === leaderName)!;
    const follower = nats.servers.find((s) => s.name !== leaderName)!;
    const ackedAt = new Map<number, number>();
    const seen: { rev: number; at: number }[] = [];
    const stopWatch = watcher.watch('b.', (e: KvEvent<number>) => seen.push({ rev: e.revision, at: Date.now() }));
    await watcher.list('b.');

    let failed = 0;
    let firstError = '';
    const acks: number[] = [];
    let running = true;
    let i = 0;
    const load = (async () => {
      let next = Date.now();
      while (running) {
        next += 50;
        const t = Date.now();
        try {
          const rev = await writer.put(`b.k${i++ % 8}`, i);
          ackedAt.set(rev, Date.now());
          acks.push(Date.now());
        } catch (err) {
          failed++;
          if (!firstError) firstError = String((err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : err).slice(0, 60);
        }
        const wait = next - Date.now();
        if (wait > 0) await pause(wait);
        else next = Date.now();
        void t;
      }
    })();

    await pause(3000);
    const faultAt = Date.now();
    const victim: NatsServer = fault === 'kill -9 follower' ? follower : leader;
    if (fault === 'SIGSTOP leader 5 s') {
      victim.hang();
      await pause(5000);
      victim.resume();
    } else {
      await victim.kill();
    }
    // Run until writes have flowed for 4 s after the fault's effects, at most 30 s.
    const deadline = faultAt + 30_000;
    while (Date.now() < deadline) {
      await pause(250);
      const recent = acks.filter((a) => a > Date.now() - 4000).length;
      if (Date.now() - faultAt > 6000 && recent >= 60) break;
    }
    running = false;
    await load;
    // Let the watch catch up (bounded), then compare.
    const wantRevs = [...ackedAt.keys()];
    for (let k = 0; k < 100 && !wantRevs.every((r) => seen.some((s) => s.rev === r)); k++) await pause(100);
    stopWatch();
    let stallMs = 0;
    for (let k = 1; k < acks.length; k++) if (acks[k]! >= faultAt - 100) stallMs = Math.max(stallMs, acks[k]! - acks[k - 1]!);
    const seenRevs = new Set(seen.map((s) => s.rev));
    const missed = wantRevs.filter((r) => !seenRevs.has(r)).length;
    let reordered = 0;
    for (let k = 1; k < seen.length; k++) if (seen[k]!.rev <= seen[k - 1]!.rev) reordered++;
    let watchMaxDelayMs = 0;
    for (const s of seen) {
      const a = ackedAt.get(s.rev);
      if (a !== undefined) watchMaxDelayMs = Math.max(watchMaxDelayMs, s.at - a);
    }
    await Promise.all([writer.close(), watcher.close()]);
    return { fault, rep, stallMs, failed, firstError, watchMaxDelayMs, missed, reordered };
  } finally {
    await nats.close();
  }
}

export async function natsFaults(reps: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const fault of ['kill -9 leader', 'SIGSTOP leader 5 s', 'kill -9 follower'] as Fault[]) {
    for (let rep = 1; rep <= reps; rep++) {
      const row = await runOnce(fault, rep);
      rows.push(row);
      process.stderr.write(`  ${fault} #${rep}: stall ${row.stallMs} ms, ${row.failed} failed\n`);
    }
  }
  return rows;
}

export function printNatsFaults(rows: Row[]): void {
  console.log('### Control plane under faults (nats-server 3 servers, R3 bucket, 1 put / 50 ms)\n');
  console.log('| fault | run | write stall (ms) | failed puts | first error | watch max delay (ms) | missed | reordered |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.fault} | ${r.rep} | ${r.stallMs} | ${r.failed} | ${r.firstError || '—'} | ${r.watchMaxDelayMs} | ${r.missed} | ${r.reordered} |`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const reps = Number(process.argv[2] ?? 2);
  printNatsFaults(await natsFaults(reps));
}
