#!/usr/bin/env node
/**
 * gridlink-node: starts one grid node. With `--control-plane nats://...` it joins (or creates) a
 * multi-process cluster on a NATS JetStream KV bucket; with the default `memory` it is a cluster
 * of one. Options: see `src/cli/options.ts` or `gridlink-node --help` (docs/operations.md).
 */
import { hostname } from 'node:os';
import { joinOrCreateCluster, retriedWhileUnavailable } from './cli/cluster.js';
import { checkNatsCredsFile, readPemFiles } from './cli/files.js';
import { namingVariable, parseCli, unknownVariableWarning, unknownVariables, type CliConfig } from './cli/options.js';
import { NODE_V8_FLAGS, youngGenerationConfigured } from './cli/v8-flags.js';
import { MemoryControlPlane, type ControlPlane } from './control/kv.js';
import { NatsControlPlane, type NatsControlPlaneOptions } from './control/nats.js';
import { StartupSteps, consoleLogger } from './logger.js';
import { startNode } from './node.js';
import type { NodeOptions, TlsOptions } from './config.js';

/** The node's TLS files (--tls-*), read and checked (readPemFiles). */
function loadTls(t: NonNullable<CliConfig['tls']>): TlsOptions {
  const { cert, key, ca } = readPemFiles(t, 'tls');
  const tls: TlsOptions = { cert: cert!, key: key! };
  if (ca !== undefined) tls.ca = ca;
  return tls;
}

async function openControlPlane(c: CliConfig, log: ReturnType<typeof consoleLogger>): Promise<{ cp: ControlPlane; close: () => Promise<void> }> {
  const spec = c.controlPlane;
  if (spec.kind === 'memory') return { cp: new MemoryControlPlane(), close: () => Promise.resolve() };
  const o: NatsControlPlaneOptions = {
    servers: spec.servers,
    bucket: spec.bucket,
    replicas: spec.replicas,
    connectTimeoutMs: spec.connectTimeoutMs,
    name: `gridlink-node ${c.id}`,
    logger: log,
  };
  if (spec.token !== undefined) o.token = spec.token;
  if (spec.user !== undefined) o.user = spec.user;
  if (spec.pass !== undefined) o.pass = spec.pass;
  if (spec.credsFile !== undefined) o.credsFile = spec.credsFile;
  if (spec.tls !== undefined) o.tls = spec.tls;
  const nats = await NatsControlPlane.connect(o);
  return { cp: nats, close: () => nats.close() };
}

async function main(): Promise<void> {
  // The signal handlers come first of all. Start-up may wait for NATS (up to
  // --nats-connect-timeout-ms) and writes to the control plane as it goes: a SIGTERM or SIGINT
  // during it killed the process (Node's default for a signal nobody listens to), whatever it had
  // written by then. Now a signal ends start-up cleanly (see `atSignal` below, step by step).
  let log = consoleLogger('info');
  let stopping = false;
  /** A signal that came while the node was starting, to act on once it has. */
  let pending: NodeJS.Signals | undefined;
  // What the first signal does; start-up replaces it as it gets further. (Handlers run only once
  // this function first waits, by when the first replacement is in place.)
  let atSignal = (signal: NodeJS.Signals): void => {
    pending = signal;
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A second SIGTERM/SIGINT (an operator's second Ctrl-C): stop waiting for the handoff and
      // the drain (or for the start to end). The cluster survives it as it survives a kill
      // (lease expiry).
      log.warn('second signal while stopping: exiting now', { signal });
      process.exit(EXIT_FORCED);
    }
    stopping = true;
    atSignal(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const argv = process.argv.slice(2);
  // Before anything else, a refusal included: a misspelt variable may be why a value is refused.
  for (const u of unknownVariables(process.env)) process.stderr.write(`gridlink-node: ${unknownVariableWarning(u)}\n`);
  const parsed = parseCli(argv, process.env, hostname());
  if (parsed.help) {
    // --help, or --version (its release line).
    process.stdout.write(parsed.usage + '\n');
    return;
  }
  const c = parsed.config;
  log = consoleLogger(c.logLevel);
  let tls: TlsOptions | undefined;
  try {
    tls = c.tls === undefined ? undefined : loadTls(c.tls);
    if (c.controlPlane.kind === 'nats') {
      if (c.controlPlane.credsFile !== undefined) checkNatsCredsFile(c.controlPlane.credsFile);
      // NATS reads these itself, by path, when it connects: checked here, they are named.
      if (c.controlPlane.tls !== undefined) readPemFiles(c.controlPlane.tls, 'nats-tls');
    }
  } catch (err) {
    throw namingVariable(err, argv, process.env);
  }
  // Until the node's own start begins, nothing of this node is in the control plane (the cluster
  // record, if this process writes it, is the cluster's, written whole or not at all): a signal
  // ends the process at once, also while it waits for NATS.
  atSignal = (signal) => {
    log.info('stopping', { signal, during: 'start-up, before the node started (nothing to undo)' });
    process.exit(0);
  };
  // Start-up, connecting included, waits out an unready control plane this long (then exit 1).
  const deadline = Date.now() + (c.controlPlane.kind === 'nats' ? c.controlPlane.connectTimeoutMs : 0);
  // Until the node's own start takes over (GridNode.start names its steps the same way).
  const steps = new StartupSteps(log, { id: c.id }, 'connecting to the control plane');
  let cp: ControlPlane;
  let close: () => Promise<void>;
  let record;
  try {
    ({ cp, close } = await openControlPlane(c, log));
    steps.step('reading the cluster record (control plane)');
    try {
      ({ record } = await retriedWhileUnavailable('cluster record', deadline, log, () => joinOrCreateCluster(cp, { clusterId: c.clusterId, partitions: c.partitions, backups: c.backups })));
    } catch (err) {
      await close();
      // A cluster setting the cluster does not have, from a variable: name it, as every other refusal does.
      throw namingVariable(err, argv, process.env);
    }
  } finally {
    steps.done();
  }
  const opts: NodeOptions = {
    id: c.id,
    controlPlane: cp,
    host: c.host,
    port: c.port,
    advertiseHost: c.advertiseHost,
    clusterId: record.clusterId,
    partitions: record.partitions,
    backups: record.backups,
    logger: log,
  };
  if (c.advertisePort !== undefined) opts.advertisePort = c.advertisePort;
  if (c.httpPort !== undefined) opts.httpPort = c.httpPort;
  if (c.zone !== undefined) opts.zone = c.zone;
  if (c.bootstrapNodes !== undefined) opts.bootstrapNodes = c.bootstrapNodes;
  if (c.authToken !== undefined) opts.authToken = c.authToken;
  if (c.maxEntries !== undefined) opts.maxEntries = c.maxEntries;
  if (c.maxBytes !== undefined) opts.maxBytes = c.maxBytes;
  if (c.transferUnitBytes !== undefined) opts.transferUnitBytes = c.transferUnitBytes;
  if (c.leaseMs !== undefined) opts.leaseMs = c.leaseMs;
  if (c.renewIntervalMs !== undefined) opts.renewIntervalMs = c.renewIntervalMs;
  if (c.leaseMarginMs !== undefined) opts.leaseMarginMs = c.leaseMarginMs;
  if (c.handoffTimeoutMs !== undefined) opts.handoffTimeoutMs = c.handoffTimeoutMs;
  if (c.handoffOutageMs !== undefined) opts.handoffOutageMs = c.handoffOutageMs;
  if (tls !== undefined) opts.tls = tls;

  // The node's start writes its lease (others may act on it at once): a signal now lets the start
  // end (no retry after it), then stops the node as a running one stops, lease released.
  atSignal = (signal) => {
    pending = signal;
    log.info('stopping once the node has started', { signal, during: 'start-up' });
  };
  let node;
  try {
    node = await retriedWhileUnavailable('node start', deadline, log, () => startNode(opts), undefined, () => pending !== undefined);
  } catch (err) {
    await close();
    if (pending !== undefined) {
      // Asked to stop, and the start did not get through (startNode ended what it had begun).
      log.info('stopped during start-up', { signal: pending, err: err instanceof Error ? err.message : String(err) });
      process.exit(0);
    }
    throw err;
  }
  if (!youngGenerationConfigured(process.execArgv, process.env['NODE_OPTIONS'])) {
    // Not an error: the node works, but spends more CPU per operation in V8's collector (ADR 0046).
    log.info('V8 young generation at its default size: a node started with these flags (the container image is) spends less CPU per operation', {
      flags: NODE_V8_FLAGS.join(' '),
      how: `node ${NODE_V8_FLAGS.join(' ')} <gridlink-node>, or NODE_OPTIONS`,
    });
  }
  const running = node;
  const stop = (signal: NodeJS.Signals): void => {
    log.info('stopping', { signal });
    running
      .stop()
      .then(close)
      .then(
        () => process.exit(0),
        (err: unknown) => {
          log.error('stop failed', { err: String(err) });
          process.exit(1);
        },
      );
  };
  atSignal = stop;
  if (pending !== undefined) {
    // A signal came while the node started: it is not announced, and stops at once.
    stop(pending);
    return;
  }
  // Every background operation of the node handles its own failures (a control-plane outage
  // included): an unhandled rejection is a bug, so exit as Node would, but say what it was.
  process.on('unhandledRejection', (reason: unknown) => {
    log.error('unhandled rejection', { err: reason instanceof Error ? (reason.stack ?? reason.message) : String(reason) });
    process.exit(1);
  });
  // The control plane lost its state (ADR 0028): the node has stopped itself; exit so that the
  // process manager starts it again, and it joins the cluster the control plane holds now.
  cp.onReset?.(() => {
    if (stopping) return;
    stopping = true;
    running.kill();
    void close()
      .catch(() => undefined)
      .then(() => process.exit(EXIT_CONTROL_PLANE_RESET));
  });
  // One line on stdout that launchers (and people) wait for; printed once the node runs and the
  // signal handlers (in place since the process began) stop it gracefully.
  process.stdout.write(
    `gridlink-node ${node.id} listening on ${c.host}:${node.port}` +
      (c.advertiseHost !== c.host || c.advertisePort !== undefined ? ` (advertised ${c.advertiseHost}:${c.advertisePort ?? node.port})` : '') +
      (node.httpPort !== undefined ? ` (http ${node.httpPort})` : '') +
      ` cluster ${record.clusterId} partitions ${record.partitions} backups ${record.backups}\n`,
  );
}

/** Exit code when the control plane lost its state (its bucket deleted or created anew). */
const EXIT_CONTROL_PLANE_RESET = 3;
/** Exit code when a second signal cut a graceful stop short. */
const EXIT_FORCED = 130;

main().catch((err: unknown) => {
  process.stderr.write(`gridlink-node: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
