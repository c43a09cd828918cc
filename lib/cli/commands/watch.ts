/**
 * `image-cache watch add|rm|ls`: the watched references over /cache/watch. The server checks a
 * watched tag on its schedule and pulls it in the background when it moved upstream.
 */

import type { RegistryBackgroundView, WatchView } from '../../watch/watches.ts';
import { UsageError } from '../args.ts';
import { defineCommand, jsonOnly } from '../command.ts';
import type { CliContext, Command } from '../context.ts';
import { table } from '../format.ts';
import { imagePath } from '../http.ts';
import { jsonLines } from '../template.ts';

/** GET /cache/watch's entries (type-only: the CLI loads nothing of the server). */
type WatchEntry = WatchView;
type RegistryEntry = RegistryBackgroundView;

const FLAGS = {
  every: { type: 'string', help: 'How often the tag is checked (add; default 1h)' },
  platform: { type: 'list', help: 'A platform to keep, os/arch[/variant] (add; repeat for more)' },
  pin: { type: 'boolean', help: 'Pin the image the tag points to, so retention keeps it (add)' },
  format: { type: 'string', help: "'json' for one JSON object per line (ls)" },
} as const;

export const watch: Command = defineCommand({
  name: 'watch',
  arguments: 'COMMAND',
  description: `Keep tags fresh: the cache checks a watched tag on a schedule (a manifest HEAD, which
Docker Hub does not count) and pulls it in the background when it moved, so CI finds the new
image already stored

Commands:
  add IMAGE [--every 1h] [--platform P]... [--pin]   Watch a tag, or change how it is watched
  rm IMAGE                                          Stop watching (removes the watch's pins)
  ls                                                List watches and each registry's budget`,
  arity: { any: true },
  flags: FLAGS,
  async run({ flags, args: [verb, ...rest] }, ctx) {
    switch (verb) {
      case 'add':
        return add(one(rest, 'add'), flags, ctx);
      case 'rm':
      case 'remove':
        await ctx.client().request(`/cache/watch/${imagePath(one(rest, 'rm'))}`, {
          method: 'DELETE',
        });
        ctx.stdout.write(`Unwatched: ${rest[0]}\n`);
        return 0;
      case 'ls':
      case 'list':
        if (rest.length > 0) throw new UsageError('"watch ls" accepts no arguments');
        return list(jsonOnly(flags.format), ctx);
      case undefined:
        ctx.stderr.write(watch.usage);
        return 2;
      default:
        throw new UsageError(`unknown watch command "${verb}"`);
    }
  },
});

function one(args: string[], verb: string): string {
  if (args.length !== 1) throw new UsageError(`"watch ${verb}" requires exactly 1 argument`);
  return args[0]!;
}

async function add(
  name: string,
  flags: { every?: string | undefined; platform: string[]; pin: boolean },
  ctx: CliContext,
): Promise<number> {
  const entry = await ctx
    .client()
    .json<WatchEntry & { pulls: { id: string; platform?: string }[] }>(
      `/cache/watch/${imagePath(name)}`,
      {
        method: 'PUT',
        query: { every: flags.every, platform: flags.platform, pin: flags.pin ? '1' : undefined },
      },
    );
  const platforms = entry.platforms.length > 0 ? ` for ${entry.platforms.join(', ')}` : '';
  const pinned = entry.pin ? ', pinned' : '';
  ctx.stdout.write(`Watching: ${entry.reference} every ${entry.every}${platforms}${pinned}\n`);
  for (const pull of entry.pulls) {
    ctx.stdout.write(
      `Pulling: ${entry.reference}${pull.platform ? ` (${pull.platform})` : ''} as job ${pull.id}\n`,
    );
  }
  return 0;
}

async function list(format: 'json' | undefined, ctx: CliContext): Promise<number> {
  const { watches, registries } = await ctx
    .client()
    .json<{ watches: WatchEntry[]; registries: RegistryEntry[] }>('/cache/watch');
  if (format === 'json') {
    ctx.stdout.write(jsonLines(watches));
    return 0;
  }
  const rows = watches.map((w) => [
    w.reference,
    w.every,
    w.platforms.join(',') || 'default',
    w.pin ? 'yes' : '',
    w.lastCheck ?? 'never',
    w.lastChange ?? '',
    w.nextCheck,
    w.lastError ?? '',
  ]);
  ctx.stdout.write(
    table([
      [
        'REFERENCE',
        'EVERY',
        'PLATFORMS',
        'PIN',
        'LAST CHECK',
        'LAST CHANGE',
        'NEXT CHECK',
        'ERROR',
      ],
      ...rows,
    ]),
  );
  for (const r of registries) {
    const pause = r.pausedUntil ? `; paused until ${r.pausedUntil}: ${r.pauseReason}` : '';
    ctx.stdout.write(
      `${r.registry}: ${r.pullsThisHour} of ${r.pullsPerHour} background pulls this hour, ${r.reserve} of its quota kept for clients${pause}\n`,
    );
  }
  return 0;
}
