/**
 * docs/operations.md §9 ("The `gridlink` admin command") held to the CLI's own tables: the verbs,
 * every option (long and short), the defaults, the environment variables and the exit codes. A
 * verb or option added, removed or renamed in run.ts, or a default or exit code changed, fails
 * here until the docs say the same.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../src/duration.js';
import { ExitCode } from '../src/errors.js';
import { envNameOf, parseCli } from '@gridlink/node';
import { COMMON, ENV_OPTIONS, OPTION_DEFAULTS, SIZES_CONNECT_MAX_MS, VERB_OPTIONS, runCli, type OptionSpec } from '../src/run.js';
import { fencedLine, unreachableLine } from '../src/table.js';

const md = (path: string): string => readFileSync(fileURLToPath(new URL(`../../../${path}`, import.meta.url)), 'utf8');

/** §9 of docs/operations.md, up to §10. */
function section9(): string {
  const s = md('docs/operations.md').split('\n## 9. The `gridlink` admin command\n')[1]?.split('\n## 10.')[0];
  if (s === undefined) throw new Error('docs/operations.md has no section 9 "The `gridlink` admin command"');
  return s;
}

/** The part of §9 under a `### <title>` heading, up to the next heading of that level. */
function subsection(title: string): string {
  const s = section9().split(`\n### ${title}\n`)[1]?.split('\n### ')[0];
  if (s === undefined) throw new Error(`docs/operations.md §9 has no "${title}" subsection`);
  return s;
}

/** The cells of each row of the markdown tables in `text` (the header and separator rows left out). */
function rows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|[\s|:-]+\|$/.test(l))
    .map((l) => l.replace(/\\\|/g, '\u0000').split('|').slice(1, -1).map((c) => c.trim().replace(/\u0000/g, '|')))
    .slice(1);
}

const longOptions = (cell: string): string[] => [...cell.matchAll(/`--([a-z][a-z-]*)/g)].map((m) => m[1]!);
const shortOptions = (cell: string): string[] => [...cell.matchAll(/`-([A-Za-z])`/g)].map((m) => m[1]!);
const shortsOf = (spec: OptionSpec): string[] => Object.values(spec).flatMap((o) => (o.short === undefined ? [] : [o.short]));

/** The text a run of the CLI prints to stdout (help needs no control plane). */
async function output(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runCli(argv, { stdout: (t) => (out += t), stderr: () => undefined });
  return { code, out };
}

describe('docs/operations.md §9: the gridlink command', () => {
  it('documents every verb, and only those', () => {
    const documented = [...section9().matchAll(/^#### `gridlink ([a-z-]+)/gm)].map((m) => m[1]!);
    expect(documented.sort()).toEqual(Object.keys(VERB_OPTIONS).sort());
  });

  it('lists every common option (long and short), and only those', () => {
    const table = rows(section9().split('\n### Exit codes\n')[0]!.split('Common options, accepted by every verb:')[1] ?? '');
    expect(table.length).toBeGreaterThan(0);
    const firstCells = table.map((r) => r[0]!).join(' ');
    expect(longOptions(firstCells).sort()).toEqual(Object.keys(COMMON).sort());
    expect(shortOptions(firstCells).sort()).toEqual(shortsOf(COMMON).sort());
  });

  it('names the environment variable of each option that has one, and no other', () => {
    const table = rows(section9().split('Common options, accepted by every verb:')[1]!.split('\n\n')[1]!);
    for (const option of ENV_OPTIONS) {
      const row = table.find((r) => longOptions(r[0]!).includes(option));
      expect(row, option).toBeDefined();
      expect(row!.join(' '), option).toContain(`\`${envNameOf(option)}\``);
    }
    const named = new Set([...md('docs/operations.md').matchAll(/GRIDLINK_[A-Z_]+/g)].map((m) => m[0]).filter((n) => section9().includes(n)));
    expect([...named].sort()).toEqual(ENV_OPTIONS.map(envNameOf).sort());
  });

  it("reads its variables by gridlink-node's names, so one environment serves both commands", () => {
    expect(ENV_OPTIONS.map(envNameOf)).toEqual(['GRIDLINK_CONTROL_PLANE', 'GRIDLINK_BUCKET', 'GRIDLINK_NATS_TOKEN', 'GRIDLINK_NATS_USER', 'GRIDLINK_NATS_PASS', 'GRIDLINK_NATS_CREDS']);
    // The node's parser reads the same variables as the same options.
    const env = { GRIDLINK_CONTROL_PLANE: 'nats://h:4222', GRIDLINK_BUCKET: 'b', GRIDLINK_NATS_USER: 'u', GRIDLINK_NATS_PASS: 'p' };
    const r = parseCli([], env, 'h');
    expect(r.help ? undefined : r.config.controlPlane).toMatchObject({ kind: 'nats', servers: ['nats://h:4222'], bucket: 'b', user: 'u', pass: 'p' });
    expect(parseCli([], { GRIDLINK_CONTROL_PLANE: 'nats://h:4222', GRIDLINK_NATS_CREDS: '/c' }, 'h')).toMatchObject({ config: { controlPlane: { credsFile: '/c' } } });
    expect(parseCli([], { GRIDLINK_CONTROL_PLANE: 'nats://h:4222', GRIDLINK_NATS_TOKEN: 't' }, 'h')).toMatchObject({ config: { controlPlane: { token: 't' } } });
  });

  it('gives the common options the defaults the code uses', () => {
    const table = rows(section9().split('Common options, accepted by every verb:')[1]!.split('\n\n')[1]!);
    const timeout = table.find((r) => longOptions(r[0]!).includes('timeout'))!;
    const cell = /default `([^`]+)`/.exec(timeout[1]!)?.[1];
    expect(cell, '--timeout default').toBeDefined();
    expect(parseDuration(cell!, 'docs')).toBe(OPTION_DEFAULTS.timeout);
    // The bucket's default is @gridlink/node's (the CLI passes none); it is the name the nodes use.
    const bucket = table.find((r) => longOptions(r[0]!).includes('bucket'))!;
    expect(/default `([^`]+)`/.exec(bucket[1]!)?.[1]).toBe('gridlink');
  });

  it("lists each verb's options with their short forms and defaults, and only those", () => {
    const table = rows(subsection('Verb options'));
    const documented = table.map((r) => `${/^`([a-z-]+)`$/.exec(r[0]!)?.[1] ?? r[0]} --${longOptions(r[1]!).join(',')}`);
    const actual = Object.entries(VERB_OPTIONS).flatMap(([verb, spec]) => Object.keys(spec).map((o) => `${verb} --${o}`));
    expect(documented.sort()).toEqual(actual.sort());
    for (const [verbCell, optionCell, defaultCell] of table) {
      const verb = /^`([a-z-]+)`$/.exec(verbCell!)![1]!;
      const option = longOptions(optionCell!)[0]!;
      const spec = VERB_OPTIONS[verb]![option]!;
      const what = `${verb} --${option}`;
      expect(shortOptions(optionCell!), what).toEqual(spec.short === undefined ? [] : [spec.short]);
      expect(optionCell!.includes(' <'), `${what}: takes a value`).toBe(spec.type === 'string');
      const dflt = (OPTION_DEFAULTS as Record<string, number | string>)[option];
      const cell = /^`([^`]+)`/.exec(defaultCell!)?.[1];
      if (dflt === undefined) expect(defaultCell, `${what}: no default`).toBe('-');
      else if (typeof dflt === 'string' || option === 'port') expect(cell, what).toBe(String(dflt));
      else expect(parseDuration(cell ?? '', what), what).toBe(dflt);
    }
  });

  it("names in each verb's usage only options of that verb or common ones", () => {
    const usages = [...section9().matchAll(/^#### `(gridlink [a-z-]+[^`]*)`$/gm), ...section9().matchAll(/^(gridlink [a-z-]+ .*)$/gm)].map((m) => m[1]!);
    expect(usages.length).toBeGreaterThan(Object.keys(VERB_OPTIONS).length);
    for (const usage of usages) {
      const verb = /^gridlink ([a-z-]+)/.exec(usage)![1]!;
      const spec = VERB_OPTIONS[verb];
      expect(spec, usage).toBeDefined();
      for (const o of longOptions(`\`${usage.replace(/ /g, ' `')}`)) expect(o in spec! || o in COMMON, `${usage}: --${o}`).toBe(true);
    }
  });

  it('--json with --output table: the usage error the common options table says it is', async () => {
    const table = rows(section9().split('Common options, accepted by every verb:')[1]!.split('\n\n')[1]!);
    const row = table.find((r) => longOptions(r[0]!).includes('json'))!;
    expect(row[1]).toContain('with `--output table` it is a usage error naming both (neither wins)');
    let err = '';
    expect(await runCli(['status', '--json', '--output', 'table'], { stdout: () => undefined, stderr: (t) => (err += t) })).toBe(ExitCode.USAGE);
    const message = (JSON.parse(err) as { error: { message: string } }).error.message;
    expect(message).toMatch(/^--json: .*--output table/);
  });

  it('quotes the usage errors of a wrong option as the command prints them', async () => {
    const text = subsection('Verb options').replace(/\s+/g, ' ');
    const quoted = [...text.matchAll(/\(`(--[a-z]+: [^`]+)`[;)]/g)].map((m) => m[1]!);
    expect(quoted).toEqual(['--port: not an option of "gridlink status"', '--sample: needs a value']);
    const stderr = async (argv: string[]): Promise<string> => {
      let err = '';
      expect(await runCli(argv, { stdout: () => undefined, stderr: (t) => (err += t) }), argv.join(' ')).toBe(ExitCode.USAGE);
      return err;
    };
    for (const argv of [['status', '--port'], ['status', '--port', '1']]) expect(await stderr(argv)).toMatch(new RegExp(`^gridlink: ${quoted[0]} `));
    expect(await stderr(['status', '--sample'])).toMatch(new RegExp(`^gridlink: ${quoted[1]} `));
    expect(await stderr(['status', '--json=yes'])).toMatch(/^gridlink: --json: takes no value /);
  });

  it('an option given an empty value is an option given no value, not one left out', async () => {
    // The control plane is never reached: each is refused while parsing.
    const never = new Proxy({}, { get: () => () => Promise.reject(new Error('connected')) }) as never;
    for (const argv of [
      ['status', '--bucket='],
      ['status', '--nats-token', ''],
      ['status', '--control-plane='],
      ['caches', '--auth-token='],
      ['dashboard', '--host='],
      ['dashboard', '--host', ' '],
      ['dashboard', '--port='],
      ['status', '--http', ''],
    ]) {
      let err = '';
      const code = await runCli(argv, { stdout: () => undefined, stderr: (t) => (err += t) }, { controlPlane: never, env: {}, signal: AbortSignal.abort() });
      const flag = argv[1]!.replace(/=$/, '');
      expect({ argv, code, err }).toEqual({ argv, code: ExitCode.USAGE, err: expect.stringMatching(new RegExp(`^gridlink: ${flag}: needs a value `)) });
    }
  });

  it("names each verb's arguments alike in §9, the verb's help, the command's help and its errors", async () => {
    const placeholders = (lines: string[]): string[] => [...new Set(lines.join(' ').match(/<[a-z-]+>/g) ?? [])].sort();
    const top = (await output(['--help'])).out;
    for (const verb of Object.keys(VERB_OPTIONS)) {
      const usageLine = new RegExp(`^(?:#### \`)?gridlink ${verb}(?:[ \`]|$)`);
      const documented = placeholders(section9().split('\n').filter((l) => usageLine.test(l)));
      const help = (await output([verb, '--help'])).out.split('\n').filter((l) => new RegExp(`^(?:usage: | {7})gridlink ${verb}\\b`).test(l));
      expect(placeholders(help), verb).toEqual(documented);
      // The command's help names a verb's arguments by the same names.
      const topLines = top.split('\n');
      const at = topLines.findIndex((l) => new RegExp(`^  ${verb}\\b`).test(l));
      expect(placeholders([topLines[at]!]).every((p) => documented.includes(p)), `${verb}: ${topLines[at]}`).toBe(true);
    }
    const argumentOf = async (argv: string[]): Promise<string> => {
      let err = '';
      expect(await runCli(argv, { stdout: () => undefined, stderr: (t) => (err += t) }), argv.join(' ')).toBe(ExitCode.USAGE);
      return /^gridlink: (<[a-z-]+>):/.exec(err)?.[1] ?? err;
    };
    expect(await argumentOf(['reset-lost', '3,x', '--yes'])).toBe('<partition>');
    expect(await argumentOf(['decommission', 'a b'])).toBe('<id>');
    expect(await argumentOf(['baseline', 'set', 'a b'])).toBe('<id>');
    expect(await argumentOf(['baseline', 'set'])).toBe('<id>');
    expect(await argumentOf(['baseline', 'add'])).toBe('<id>');
  });

  it('quotes the unreachable: and fenced: lines of gridlink status as the command prints them (ADR 0065)', () => {
    const text = section9().replace(/\s+/g, ' ');
    const quoted = (line: string | undefined): string => `\`${line ?? '(no line)'}\``;
    const m = (id: string, unreachable: string[]) => ({ id, state: 'member', unreachable });
    expect(text).toContain(quoted(unreachableLine([m('node-1', []), m('node-2', ['node-3']), m('node-3', ['node-2'])])[0]));
    const fenced = (state: string, nextEpoch: string | null) => fencedLine([{ id: 'node-3', epoch: 'a420f5810123', state, nextEpoch }])[0];
    expect(text).toContain(quoted(fenced('stopping', null)));
    expect(text).toContain(quoted(fenced('held-back', '5c1e07d24567')));
    expect(text).toContain(`\`…: ${fenced('gone', null)!.split(': ').slice(2).join(': ')}\``);
  });

  it('gives the bound on the handshake of the client `gridlink caches` asks the sizes with as the code has it (was: "within --timeout", at most 5s in the code)', () => {
    const caches = section9().split('\n#### `gridlink caches')[1]!.split('\n#### ')[0]!.replace(/\s+/g, ' ');
    expect(caches).toContain(`do not answer the handshake within \`--timeout\`, at most \`${formatDuration(SIZES_CONNECT_MAX_MS)}\``);
  });

  it('gives every exit code its value, and no other', () => {
    const documented = rows(subsection('Exit codes')).map((r) => Number(r[0]));
    expect(documented).toEqual(Object.values(ExitCode).sort((a, b) => a - b));
    // ADR 0025 holds the same table.
    const adr = md('docs/adr/0025-admin-cli-contract.md').split('**Exit codes**')[1]!.split('\n\n')[1]!;
    expect(rows(adr).map((r) => Number(r[0]))).toEqual(documented);
  });

  it("--help lists every verb, each verb's help its options, and the exit codes", async () => {
    const top = await output(['--help']);
    expect(top.code).toBe(ExitCode.OK);
    for (const verb of Object.keys(VERB_OPTIONS)) expect(top.out, verb).toMatch(new RegExp(`^  ${verb}\\b`, 'm'));
    for (const code of Object.values(ExitCode)) expect(top.out, `exit code ${code}`).toMatch(new RegExp(`\\b${code} [a-z]`));
    for (const [verb, spec] of Object.entries(VERB_OPTIONS)) {
      const help = await output([verb, '--help']);
      expect(help.code, verb).toBe(ExitCode.OK);
      for (const o of [...Object.keys(spec), ...Object.keys(COMMON)]) expect(help.out, `${verb} --help: --${o}`).toContain(`--${o}`);
      // `gridlink help <verb>` is the same help (it used to print the command's, for any verb).
      expect(await output(['help', verb]), `help ${verb}`).toEqual(help);
    }
    expect(await output(['help'])).toEqual(top);
    expect((await output(['help', 'frobnicate'])).code).toBe(ExitCode.USAGE);
  });
});
