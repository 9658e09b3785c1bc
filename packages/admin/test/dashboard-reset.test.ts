/**
 * `gridlink dashboard` on a bucket that NATS loses (deleted and created anew, ADR 0028): its watch
 * delivers nothing more, so instead of showing the old cluster forever it stops with exit code 4
 * (ADMIN_CONTROL_PLANE_RESET) and says why. Real nats-server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { NatsControlPlane } from '@gridlink/node';
import { NatsCluster, waitFor } from '@gridlink/testkit';
import { runCli } from '../src/run.js';

let nats: NatsCluster;

beforeAll(async () => {
  nats = await NatsCluster.start({ servers: 1 });
});

afterAll(async () => {
  await nats?.close();
});

describe('gridlink dashboard and a control plane that lost its state', () => {
  it('stops with exit code 4 naming the reset, its page closed', async () => {
    const cp = await NatsControlPlane.connect({ servers: nats.urls, bucket: 'dash', connectTimeoutMs: 20_000 });
    try {
      let err = '';
      let url = '';
      const running = runCli(['dashboard', '--port', '0', '--json'], { stdout: () => undefined, stderr: (t) => (err += t) }, { controlPlane: cp, onDashboard: (u) => (url = u), signal: new AbortController().signal });
      await waitFor('the dashboard to listen', () => url !== '', 10_000);
      expect((await fetch(url)).status).toBe(200);
      const kvm = new Kvm(cp.connection);
      await (await kvm.open('dash')).destroy();
      await kvm.create('dash');
      expect(await running).toBe(4);
      expect(JSON.parse(err)).toMatchObject({ error: { code: 'ADMIN_CONTROL_PLANE_RESET', message: expect.stringMatching(/lost its state.*start the dashboard again/) as unknown } });
      await expect(fetch(url)).rejects.toThrow();
    } finally {
      await cp.close();
    }
  });
});
