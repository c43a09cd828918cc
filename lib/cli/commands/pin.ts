/** `image-cache pin`, `unpin` and `pins`: the cache's pins over /cache/pins. */
import { flagBoolean, flagString, parseArgs, UsageError } from '../args.ts';
import type { CliContext, Command } from '../context.ts';
import { table } from '../format.ts';
import { imagePath } from '../http.ts';
import { jsonLines } from '../template.ts';

/** One entry of GET /cache/pins. */
export interface PinEntry {
  Name: string;
  Id: string;
  Manifest: string;
  Note: string;
  Created: string;
  Expires: string | null;
}

const pinUsage = `Usage:  image-cache pin [OPTIONS] IMAGE

Pin an image so that prune, retention and rmi (without -f) leave it alone

Options:
      --expires string   Let the pin lapse after a duration (24h, 7d) or at an RFC 3339 time
      --note string      Who pinned it and why (shown in conflicts)
`;

export const pin: Command = {
  usage: pinUsage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, {
      note: { type: 'string' },
      expires: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(pinUsage);
      return 0;
    }
    const [name, ...extra] = args.positionals;
    if (!name || extra.length > 0) throw new UsageError('"pin" requires exactly 1 argument.');
    const entry = await ctx.client().json<PinEntry>(`/cache/pins/${imagePath(name)}`, {
      method: 'PUT',
      query: { note: flagString(args, 'note'), expires: flagString(args, 'expires') },
    });
    const until = entry.Expires ? ` until ${entry.Expires}` : '';
    ctx.stdout.write(`Pinned: ${entry.Name} (${entry.Id})${until}\n`);
    return 0;
  },
};

const unpinUsage = `Usage:  image-cache unpin PIN

Remove a pin (by the name it was pinned with, or the image ID for pins made by ID)
`;

export const unpin: Command = {
  usage: unpinUsage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, { help: { type: 'boolean', short: 'h' } });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(unpinUsage);
      return 0;
    }
    const [name, ...extra] = args.positionals;
    if (!name || extra.length > 0) throw new UsageError('"unpin" requires exactly 1 argument.');
    await ctx.client().request(`/cache/pins/${imagePath(name)}`, { method: 'DELETE' });
    ctx.stdout.write(`Unpinned: ${name}\n`);
    return 0;
  },
};

const pinsUsage = `Usage:  image-cache pins [OPTIONS]

List the pins that are in force

Options:
      --format string   'json' for one JSON object per line
`;

export const pins: Command = {
  usage: pinsUsage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, {
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(pinsUsage);
      return 0;
    }
    const format = flagString(args, 'format');
    if (format !== undefined && format !== 'json') {
      throw new UsageError(`unsupported format ${JSON.stringify(format)}: only 'json'`);
    }
    const entries = await ctx.client().json<PinEntry[]>('/cache/pins');
    if (format === 'json') {
      ctx.stdout.write(jsonLines(entries));
      return 0;
    }
    const rows = entries.map((e) => [
      e.Name,
      e.Id.replace(/^sha256:/, '').slice(0, 12),
      e.Note,
      e.Created,
      e.Expires ?? '',
    ]);
    ctx.stdout.write(table([['NAME', 'IMAGE ID', 'NOTE', 'CREATED', 'EXPIRES'], ...rows]));
    return 0;
  },
};
