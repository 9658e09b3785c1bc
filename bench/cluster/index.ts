/**
 * bench/cluster: multi-process cluster measurements. Today: the NATS control plane under faults
 * (nats-faults.ts). Repetitions: GRIDLINK_BENCH_REPS (default 2).
 */
import { natsFaults, printNatsFaults } from './nats-faults.js';

const reps = Number(process.env['GRIDLINK_BENCH_REPS'] ?? 2);
printNatsFaults(await natsFaults(reps));
