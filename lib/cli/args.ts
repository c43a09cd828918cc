/**
 * Flag parsing with docker's (pflag's) conventions: `--flag value`, `--flag=value`, bundled short
 * booleans (`-aq`), booleans set explicitly (`-H=false`, `--no-trunc=true`), repeatable flags
 * (`--filter a=b --filter c=d`) and `--` ending the flags.
 */

/** Wrong usage: printed with a hint to `--help`, exit status 2 (as this CLI always has). */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface FlagSpec {
  type: 'boolean' | 'string' | 'list';
  short?: string;
  default?: boolean | string;
}

export type FlagSpecs = Record<string, FlagSpec>;

export interface ParsedArgs {
  flags: Record<string, boolean | string | string[] | undefined>;
  positionals: string[];
}

function parseBoolean(name: string, value: string): boolean {
  if (/^(1|t|true)$/i.test(value)) return true;
  if (/^(0|f|false)$/i.test(value)) return false;
  throw new UsageError(`invalid argument "${value}" for "--${name}" flag: expected true or false`);
}

export function parseArgs(argv: readonly string[], specs: FlagSpecs): ParsedArgs {
  const flags: ParsedArgs['flags'] = {};
  for (const [name, spec] of Object.entries(specs)) {
    flags[name] = spec.type === 'list' ? [] : spec.default;
  }
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) if (spec.short) byShort.set(spec.short, name);
  const positionals: string[] = [];

  const set = (name: string, display: string, inline: string | undefined, next: () => string) => {
    const spec = specs[name];
    if (!spec) throw new UsageError(`unknown flag: ${display}`);
    if (spec.type === 'boolean') {
      flags[name] = inline === undefined ? true : parseBoolean(name, inline);
      return;
    }
    const value = inline ?? next();
    if (spec.type === 'list') (flags[name] as string[]).push(value);
    else flags[name] = value;
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const next = (display: string) => () => {
      const value = argv[i + 1];
      if (value === undefined) throw new UsageError(`flag needs an argument: ${display}`);
      i++;
      return value;
    };
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const inline = eq === -1 ? undefined : arg.slice(eq + 1);
      set(name, `--${name}`, inline, next(`--${name}`));
    } else if (arg.startsWith('-') && arg.length > 1) {
      // Bundled shorts: every letter is a flag until one takes a value, which gets the rest.
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j] ?? '';
        const name = byShort.get(letter);
        if (!name) throw new UsageError(`unknown shorthand flag: '${letter}' in ${arg}`);
        const spec = specs[name];
        let rest = arg.slice(j + 1);
        if (rest.startsWith('=')) rest = rest.slice(1);
        else if (spec?.type === 'boolean') {
          set(name, `-${letter}`, undefined, next(`-${letter}`));
          continue;
        }
        set(name, `-${letter}`, rest === '' ? undefined : rest, next(`-${letter}`));
        break;
      }
    } else {
      positionals.push(arg);
    }
  }
  return { flags, positionals };
}
