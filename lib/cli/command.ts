/**
 * One declaration per command (name, arguments, flags with their types, defaults and help)
 * from which the parser's specs, the argument-count errors and the `--help` text all come, so
 * a flag cannot be parsed without being documented, or documented without being parsed.
 *
 * Parsing stays with args.ts rather than node's util.parseArgs: that one refuses a value on a
 * boolean (`-H=false`, `--no-trunc=true`, which docker accepts), has no value placeholders or
 * help, and its error texts are not docker's (`unknown flag: --bogus`, `flag needs an
 * argument: -f`), which scripts and tests match.
 */
import { type FlagSpec, type FlagSpecs, parseArgs, UsageError } from './args.ts';
import type { CliContext, Command } from './context.ts';

export interface FlagDef extends FlagSpec {
  /** One line, or several joined by newlines: each is aligned under the first. */
  help: string;
  /** The value's name in the help (`--filter filter`); `string` unless said. */
  value?: string;
}

export type FlagDefs = Record<string, FlagDef>;

/** What a flag's declaration makes of it: lists are arrays, booleans never undefined. */
type FlagValue<F extends FlagDef> = F['type'] extends 'list'
  ? string[]
  : F['type'] extends 'boolean'
    ? boolean
    : F extends { default: string }
      ? string
      : string | undefined;

export type FlagValues<D extends FlagDefs> = { -readonly [K in keyof D]: FlagValue<D[K]> };

/** How many positional arguments a command takes; the error wording follows docker's. */
export type Arity =
  | { exactly: number }
  | { atLeast: number }
  | { atMost: number }
  | { none: true }
  | { any: true };

export interface Parsed<D extends FlagDefs> {
  flags: FlagValues<D>;
  args: string[];
}

export interface CommandDef<D extends FlagDefs> {
  name: string;
  /** The arguments part of the usage line, after `[OPTIONS]`: `IMAGE [IMAGE...]`. */
  arguments?: string;
  /** The text under the usage line: a summary, and any paragraphs or lists that explain more. */
  description: string;
  arity: Arity;
  flags: D;
  /** A line or two after the options. */
  footer?: string;
  run(input: Parsed<D>, ctx: CliContext): Promise<number>;
}

/** A command whose flags another parser owns (`serve`: configuration): help only comes from here. */
export interface PassThroughDef {
  name: string;
  description: string;
  flags: FlagDefs;
  footer?: string;
  run(argv: string[], ctx: CliContext): Promise<number>;
}

const HELP: FlagSpec = { type: 'boolean', short: 'h' };
/** Where help text starts: as cobra, three spaces past the longest flag column, at least. */
const GAP = 3;

export function defineCommand<const D extends FlagDefs>(def: CommandDef<D>): Command {
  const specs: FlagSpecs = { ...def.flags, help: HELP };
  const usage = helpText(def);
  return {
    usage,
    async run(argv, ctx) {
      const parsed = parseArgs(argv, specs);
      if (parsed.flags.help === true) {
        ctx.stdout.write(usage);
        return 0;
      }
      checkArity(def.name, def.arity, parsed.positionals);
      const flags = { ...parsed.flags };
      delete flags.help;
      // Absent booleans are false, not undefined, so a command can pass them on as they are.
      for (const [name, flag] of Object.entries(def.flags)) {
        if (flag.type === 'boolean') flags[name] ??= false;
      }
      return def.run({ flags: flags as FlagValues<D>, args: parsed.positionals }, ctx);
    },
  };
}

export function definePassThrough(def: PassThroughDef): Command {
  const usage = helpText(def);
  return {
    usage,
    run(argv, ctx) {
      if (argv.includes('--help') || argv.includes('-h')) {
        ctx.stdout.write(usage);
        return Promise.resolve(0);
      }
      return def.run(argv, ctx);
    },
  };
}

function checkArity(name: string, arity: Arity, args: readonly string[]): void {
  const plural = (n: number) => `${n} argument${n === 1 ? '' : 's'}`;
  if ('exactly' in arity && args.length !== arity.exactly) {
    throw new UsageError(`"${name}" requires exactly ${plural(arity.exactly)}.`);
  }
  if ('atLeast' in arity && args.length < arity.atLeast) {
    throw new UsageError(`"${name}" requires at least ${plural(arity.atLeast)}.`);
  }
  if ('atMost' in arity && args.length > arity.atMost) {
    throw new UsageError(`"${name}" requires at most ${plural(arity.atMost)}.`);
  }
  if ('none' in arity && args.length > 0) throw new UsageError(`"${name}" accepts no arguments.`);
}

/** docker's layout: usage line, description, then an aligned Options table. */
export function helpText(def: {
  name: string;
  arguments?: string;
  description: string;
  flags: FlagDefs;
  footer?: string;
}): string {
  const flags = Object.entries(def.flags);
  const usageLine = ['Usage:  image-cache', def.name, flags.length > 0 ? '[OPTIONS]' : '']
    .concat(def.arguments ?? '')
    .filter(Boolean)
    .join(' ');
  const sections = [`${usageLine}\n`, `${def.description.trimEnd()}\n`];
  if (flags.length > 0) sections.push(`Options:\n${optionsTable(flags)}`);
  if (def.footer) sections.push(`${def.footer.trimEnd()}\n`);
  return sections.join('\n');
}

function optionsTable(flags: [string, FlagDef][]): string {
  const lefts = flags.map(([name, flag]) => {
    const short = flag.short ? `-${flag.short}, ` : '    ';
    const value = flag.type === 'boolean' ? '' : ` ${flag.value ?? 'string'}`;
    return `  ${short}--${name}${value}`;
  });
  const width = Math.max(...lefts.map((left) => left.length)) + GAP;
  return flags
    .map(([, flag], i) => {
      const defaultNote = flag.default === undefined ? '' : ` (default ${flag.default})`;
      const [first = '', ...more] = `${flag.help}${defaultNote}`.split('\n');
      const rest = more.map((line) => `\n${' '.repeat(width)}${line}`).join('');
      return `${(lefts[i] ?? '').padEnd(width)}${first}${rest}\n`;
    })
    .join('');
}

/** `--format` of the commands whose only alternative to their table is JSON. */
export const JSON_FORMAT_FLAG = {
  type: 'string',
  help: "'json' for one JSON object per line",
} as const;

/** Refuses any `--format` but `json`, for the commands declared with JSON_FORMAT_FLAG. */
export function jsonOnly(format: string | undefined): 'json' | undefined {
  if (format !== undefined && format !== 'json') {
    throw new UsageError(`unsupported format ${JSON.stringify(format)}: only 'json'`);
  }
  return format;
}
