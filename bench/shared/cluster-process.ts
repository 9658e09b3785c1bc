/**
 * Runs a LocalCluster in this process for a benchmark in another. Prints one JSON line
 * ({ endpoints, nodeIds }) when ready, then executes one command per stdin line and answers
 * each with one line: `kill <id>`, `hang <id>`, `resume <id>`, `restart <id>`, `stop`.
 */
import { createInterface } from 'node:readline';
import { LocalCluster } from '@gridlink/node';

const opts = JSON.parse(process.argv[2] ?? '{}') as { nodes?: number; backups?: number; partitions?: number };
const cluster = await LocalCluster.start(opts);
process.stdout.write(`${JSON.stringify({ endpoints: cluster.endpoints, nodeIds: cluster.nodeIds })}\n`);

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const [cmd, id] = line.trim().split(/\s+/);
  try {
    switch (cmd) {
      case 'kill':
        await cluster.kill(id!);
        break;
      case 'hang':
        cluster.hang(id!);
        break;
      case 'resume':
        cluster.resume(id!);
        break;
      case 'restart':
        await cluster.restart(id!);
        break;
      case 'stop':
        await cluster.stop();
        process.exit(0);
        break;
      default:
        throw new Error(`unknown command ${cmd}`);
    }
    process.stdout.write(`ok ${line}\n`);
  } catch (err) {
    process.stdout.write(`error ${(err as Error).message}\n`);
  }
}
await cluster.stop();
