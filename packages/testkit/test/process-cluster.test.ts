/**
 * Real processes: one nats-server, three `gridlink-node` processes (the built CLI) forming a
 * cluster on the NATS KV control plane, and a @gridlink/client under load (32 concurrent workers
 * writing, reading back and incrementing a counter; helpers/load.ts) while one fault at a time hits a node:
 * kill -9, hang (SIGSTOP) and resume, restart empty, cut off from NATS and healed. In every scenario no operation fails, no
 * acknowledged write is lost and the counter equals the acknowledged increments.
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '@gridlink/affinity';
import { NODE_V8_FLAGS } from '@gridlink/node';
import { waitFor } from '@gridlink/testkit';
import { expectExclusiveHolds, startLockWorkers } from './helpers/locks.js';
import { processClusterFixture, throughFault as throughLoad } from './helpers/load.js';

const CLI = fileURLToPath(new URL('../../node/dist/cli.js', import.meta.url));

/** Runs the CLI to completion (bounded), returning its exit code and output. */
function runCli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gridlink-node ${args.join(' ')} did not exit: ${err}`));
    }, 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

// Ends every process the kit started and checks that none and no directory of it is left.
const fx = processClusterFixture({ nodes: 3, natsServers: 1, partitions: 64 });

let scenario = 0;

/** The shared load (helpers/load.ts) through `fault`, on a fresh cache per scenario. */
async function throughFault(fault: () => Promise<void>): Promise<void> {
  await throughLoad(fx.client, `load${++scenario}`, fault);
}

describe('ProcessCluster: gridlink-node processes on a NATS control plane', () => {
  it('three processes form one cluster with every partition owned', async () => {
    const topo = (await fx.cluster.topology())!;
    expect(Object.keys(topo.members).sort()).toEqual(['node-1', 'node-2', 'node-3']);
    expect(topo.partitions).toBe(64);
    expect(topo.owners.every((o) => o.length === 2)).toBe(true);
    expect(new Set(fx.cluster.nodes.map((n) => n.pid)).size).toBe(3);
    // Started with the runtime flags the container image uses (ADR 0046).
    if (process.platform === 'linux') {
      for (const n of fx.cluster.nodes) expect(readFileSync(`/proc/${n.pid}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining([...NODE_V8_FLAGS]));
    }
  });

  it('a joining node with a different partition count or cluster id is refused, naming the setting', async () => {
    const base = ['--control-plane', fx.cluster.natsUrls.join(','), '--bucket', fx.cluster.bucket, '--port', '0', '--id', 'intruder'];
    const p = await runCli([...base, '--partitions', '32']);
    expect(p.code).toBe(1);
    expect(p.err).toMatch(/partitions: this node is configured with partitions 32 but the cluster "gridlink" has 64/);
    const c = await runCli([...base, '--cluster-id', 'other']);
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/cluster-id/);
    expect(Object.keys((await fx.cluster.topology())!.members)).not.toContain('intruder');
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('--control-plane');
  });

  it('a node killed with SIGKILL under load: no failed operation, no lost write, exact counter', async () => {
    const victim = fx.cluster.node('node-2');
    await throughFault(async () => {
      await victim.kill();
      await fx.cluster.waitForGone('node-2');
    });
    expect(victim.running).toBe(false);
  });

  it('the killed node restarted empty under the same id rejoins and takes partitions back, under load', async () => {
    const p = fx.cluster.node('node-2');
    const before = (await fx.cluster.topology())!;
    await throughFault(async () => {
      await p.start();
      await fx.cluster.waitForMembers(['node-1', 'node-2', 'node-3']);
    });
    const topo = (await fx.cluster.topology())!;
    expect(topo.members['node-2']!.epoch).not.toBe(before.members['node-2']?.epoch);
    await waitFor('node-2 owns partitions again', async () => ((await fx.cluster.topology())?.owners ?? []).some((o) => o.includes('node-2')), 30_000);
  });

  it('a node hung (SIGSTOP) and resumed under load: it is declared gone, then rejoins under a new epoch', async () => {
    const p = fx.cluster.node('node-3');
    const epoch = (await fx.cluster.topology())!.members['node-3']!.epoch;
    await throughFault(async () => {
      p.hang();
      try {
        await fx.cluster.waitForGone('node-3');
      } finally {
        p.resume();
      }
      await fx.cluster.waitForMembers(['node-3']);
    });
    expect((await fx.cluster.topology())!.members['node-3']!.epoch).not.toBe(epoch);
  });

  it('a node cut off from the control plane under load: declared gone, then rejoins under a new epoch after healing', async () => {
    const epoch = (await fx.cluster.topology())!.members['node-3']!.epoch;
    await throughFault(async () => {
      fx.cluster.isolateFromControlPlane('node-3');
      try {
        await fx.cluster.waitForGone('node-3');
      } finally {
        fx.cluster.healControlPlane('node-3');
      }
      await fx.cluster.waitForMembers(['node-3']);
    });
    expect((await fx.cluster.topology())!.members['node-3']!.epoch).not.toBe(epoch);
    expect(fx.cluster.node('node-3').running).toBe(true);
  });

  it('lock hand-offs between two client processes through a kill of the lock primary: holders never overlap, tokens only grow', async () => {
    const key = 'handoff';
    const workers = startLockWorkers(fx.cluster.endpoints, key);
    try {
      await waitFor('hand-offs before the fault', () => workers.holds.length >= 20 && new Set(workers.holds.map((h) => h.w)).size === 2, 30_000);
      const topo = (await fx.cluster.topology())!;
      const primary = topo.owners[partitionOf(key, topo.partitions)]![0]!;
      const victim = fx.cluster.node(primary);
      await throughFault(async () => {
        await victim.kill();
        await fx.cluster.waitForGone(primary);
        const before = workers.holds.length;
        await waitFor('hand-offs after the kill', () => workers.holds.length >= before + 20, 30_000);
        await victim.start();
        await fx.cluster.waitForMembers([primary]);
      });
    } finally {
      await workers.stop();
    }
    expectExclusiveHolds(workers);
  });

  it('a stopped node (SIGTERM) exits cleanly with code 0 and leaves the cluster at once', async () => {
    const p = fx.cluster.node('node-1');
    await p.stop();
    expect(p.exitCode).toBe(0);
    await fx.cluster.waitForGone('node-1', 5000);
  });
});
