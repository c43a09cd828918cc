/**
 * The shared command layer (lib/cli/command.ts): help text, argument counts and flag errors all
 * come from each command's one declaration. Runs `main` in process: none of this reaches a server
 * (the capture's client throws if anything tries).
 */
import { describe, expect, it } from 'vitest';
import { defineCommand, type FlagValues, helpText } from '../lib/cli/command.ts';
import type { CliContext } from '../lib/cli/context.ts';
import { captureCli } from './support/cli-capture.ts';

describe('help derived from the declarations', () => {
  it('prints docker-style help with aligned options, multi-line help and defaults', async () => {
    const cli = captureCli();
    expect(await cli.run('history', '--help')).toBe(0);
    expect(cli.err()).toBe('');
    expect(cli.out()).toBe(`Usage:  image-cache history [OPTIONS] IMAGE

Show the history of an image

Options:
      --format string   Format output using a custom template:
                        'table':            Print output in table format with column headers (default)
                        'table TEMPLATE':   Print output in table format using the given Go template
                        'json':             Print in JSON format
                        'TEMPLATE':         Print output using the given Go template
  -H, --human           Print sizes and dates in human readable format (default true)
      --no-trunc        Don't truncate output
  -q, --quiet           Only show image IDs
`);
  });

  it('gives the same text for -h, --help and `help COMMAND`, and leaves out [OPTIONS] without flags', async () => {
    for (const argv of [
      ['rmi', '-h'],
      ['help', 'rmi'],
      ['rm', '--help'],
      ['image', 'rm', '-h'],
    ]) {
      const cli = captureCli();
      expect(await cli.run(...argv)).toBe(0);
      expect(cli.out()).toMatch(/^Usage: {2}image-cache rmi \[OPTIONS\] IMAGE \[IMAGE\.\.\.\]\n/);
      expect(cli.out()).toContain('  -f, --force      Force removal');
      expect(cli.out()).toContain('      --no-prune   Do not delete');
    }
    const tag = captureCli();
    expect(await tag.run('tag', '--help')).toBe(0);
    expect(tag.out()).toBe(
      'Usage:  image-cache tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]\n\n' +
        'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE\n',
    );
  });

  it('lays out a declaration: placeholders, shorthands, defaults, continuation lines, footer', () => {
    expect(
      helpText({
        name: 'demo',
        arguments: 'THING',
        description: 'Do a thing',
        flags: {
          level: { type: 'string', short: 'l', value: 'int', default: '3', help: 'How hard' },
          tag: { type: 'list', value: 'name', help: 'Add a tag\n(repeatable)' },
          dry: { type: 'boolean', help: 'Only say what' },
        },
        footer: 'See the docs.',
      }),
    ).toBe(`Usage:  image-cache demo [OPTIONS] THING

Do a thing

Options:
  -l, --level int   How hard (default 3)
      --tag name    Add a tag
                    (repeatable)
      --dry         Only say what

See the docs.
`);
  });
});

describe('usage errors derived from the declarations', () => {
  const cases: [string[], string][] = [
    [['history'], '"history" requires exactly 1 argument.'],
    [['tag', 'a'], '"tag" requires exactly 2 arguments.'],
    [['rmi'], '"rmi" requires at least 1 argument.'],
    [['inspect'], '"inspect" requires at least 1 argument.'],
    [['images', 'a', 'b'], '"images" requires at most 1 argument.'],
    [['gc', 'now'], '"gc" accepts no arguments.'],
    [['pins', 'x'], '"pins" accepts no arguments.'],
    [['images', '--bogus'], 'unknown flag: --bogus'],
    [['images', '-z'], "unknown shorthand flag: 'z' in -z"],
    [['images', '--format'], 'flag needs an argument: --format'],
    [
      ['history', '-H=maybe', 'x'],
      'invalid argument "maybe" for "--human" flag: expected true or false',
    ],
    [['pins', '--format', 'table'], `unsupported format "table": only 'json'`],
    [['pull', '--platform', 'linux', 'x'], 'invalid platform "linux": expected os/arch[/variant]'],
  ];
  it.each(cases)('%j: exit 2 and the hint to --help', async (argv, message) => {
    const cli = captureCli();
    expect(await cli.run(...argv)).toBe(2);
    expect(cli.out()).toBe('');
    expect(cli.err()).toBe(`${message}\nSee 'image-cache ${argv[0]} --help'.\n`);
  });

  it('names the docker spelling in the hint', async () => {
    const cli = captureCli();
    expect(await cli.run('image', 'ls', 'a', 'b')).toBe(2);
    expect(cli.err()).toBe(
      `"images" requires at most 1 argument.\nSee 'image-cache image ls --help'.\n`,
    );
  });

  it('prints the token help on stderr, exit 2, without a token command', async () => {
    const cli = captureCli();
    expect(await cli.run('token')).toBe(2);
    expect(cli.out()).toBe('');
    expect(cli.err()).toMatch(/^Usage: {2}image-cache token \[OPTIONS\] COMMAND\n/);
    expect(cli.err()).toContain('      --scope string     read, pull, write or admin (create)');
  });
});

describe('the values a command runs with', () => {
  const flags = {
    all: { type: 'boolean', short: 'a', help: 'All' },
    human: { type: 'boolean', short: 'H', default: true, help: 'Human' },
    filter: { type: 'list', short: 'f', help: 'Filter' },
    format: { type: 'string', help: 'Format' },
    level: { type: 'string', default: '3', help: 'Level' },
  } as const;

  async function parse(...argv: string[]) {
    let seen: { flags: FlagValues<typeof flags>; args: string[] } | undefined;
    const command = defineCommand({
      name: 'demo',
      description: 'Demo',
      arity: { any: true },
      flags,
      async run(input) {
        seen = input;
        return 7;
      },
    });
    const ctx = {
      stdout: { write: () => true },
      stderr: { write: () => true },
    } as unknown as CliContext;
    expect(await command.run(argv, ctx)).toBe(7);
    return seen;
  }

  it('gets typed defaults when no flag is given, and no help flag', async () => {
    expect(await parse()).toEqual({
      flags: { all: false, human: true, filter: [], format: undefined, level: '3' },
      args: [],
    });
  });

  it('gets docker-style values: bundles, repeats, inline values, explicit booleans, --', async () => {
    expect(
      await parse('-aH=false', '-fa=1', '--filter=b=2', '--format', 'json', 'x', '--', '-y'),
    ).toEqual({
      flags: { all: true, human: false, filter: ['a=1', 'b=2'], format: 'json', level: '3' },
      args: ['x', '-y'],
    });
  });
});
