/**
 * gridlink-node and signals: a second SIGTERM while a graceful stop waits (here for a handoff the
 * control plane cannot take, NATS being down) exits at once with code 130, as an operator's second
 * Ctrl-C expects, instead of waiting out --handoff-timeout-ms.
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, trackedPids, trackedTempDirs, waitFor } from '@gridlink/testkit';

let cluster: ProcessCluster | undefined;

beforeAll(async () => {
  cluster = await ProcessCluster.start({ nodes: 1, natsServers: 1, partitions: 8, logLevel: 'info', nodeArgs: ['--handoff-timeout-ms', '60000'] });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  expect(trackedPids()).toEqual([]);
  expect(trackedTempDirs()).toEqual([]);
});

describe('gridlink-node signals', () => {
  it('a second SIGTERM during a stop that waits for the control plane exits at once with code 130', async () => {
    const node = cluster!.nodes[0]!;
    const pid = node.pid!;
    await cluster!.nats.servers[0]!.kill();
    const code = node.terminate(); // first SIGTERM: the handoff now waits up to 60 s
    await waitFor('the node to log that it is stopping', () => /"msg":"stopping"/.test(node.log), 10_000);
    expect(node.running).toBe(true);
    process.kill(pid, 'SIGTERM');
    await waitFor('the node to exit', () => !node.running, 10_000);
    expect(await code).toBe(130);
    expect(node.log).toMatch(/second signal while stopping: exiting now/);
  });
});
