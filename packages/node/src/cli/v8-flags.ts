/**
 * V8 flags a `gridlink-node` process should be started with (ADR 0046), and whether a process was.
 *
 * `--max-semi-space-size=4`: a young generation of 4 MiB semi-spaces instead of V8's 16 MiB. A
 * node's JavaScript heap is small (about 10 MB) while it allocates about as many bytes of
 * ArrayBuffer as it reads from its sockets (Node copies every read into a fresh one). V8 counts
 * those bytes against the old generation's headroom until a scavenge frees them, and keeps a
 * young generation's worth of that headroom free: with 16 MiB semi-spaces that left room for
 * about 8 MB of reads, and under 1 KiB puts a node ran a full mark-compact every 100–250 ms
 * (about a sixth of its CPU samples). With 4 MiB, scavenges come four times as often, free those
 * bytes sooner, and the headroom is larger: a third as many mark-compacts, and at 16 requests in
 * flight a 1 KiB put costs the nodes 10–17 % less CPU (`bench/cluster/young-gen.ts`). The flag has
 * to be given when the process starts (V8 sizes its heap then; `v8.setFlagsFromString` later has
 * no effect on it).
 */
export const NODE_V8_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=4']);

/**
 * Whether the process was started with a young-generation size of its own: `--max-semi-space-size`
 * (V8 also accepts underscores) in its exec arguments or in NODE_OPTIONS.
 */
export function youngGenerationConfigured(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  const given = (arg: string): boolean => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(arg);
  if (execArgv.some(given)) return true;
  return (nodeOptions ?? '').split(/\s+/).some(given);
}
