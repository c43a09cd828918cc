/** `image-cache pin`, `unpin` and `pins`: the cache's pins over /cache/pins. */
import { defineCommand, JSON_FORMAT_FLAG, jsonOnly } from '../command.ts';
import type { Command } from '../context.ts';
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

export const pin: Command = defineCommand({
  name: 'pin',
  arguments: 'IMAGE',
  description: 'Pin an image so that prune, retention and rmi (without -f) leave it alone',
  arity: { exactly: 1 },
  flags: {
    expires: {
      type: 'string',
      help: 'Let the pin lapse after a duration (24h, 7d) or at an RFC 3339 time',
    },
    note: { type: 'string', help: 'Who pinned it and why (shown in conflicts)' },
  },
  async run({ flags, args: [name = ''] }, ctx) {
    const entry = await ctx.client().json<PinEntry>(`/cache/pins/${imagePath(name)}`, {
      method: 'PUT',
      query: { note: flags.note, expires: flags.expires },
    });
    const until = entry.Expires ? ` until ${entry.Expires}` : '';
    ctx.stdout.write(`Pinned: ${entry.Name} (${entry.Id})${until}\n`);
    return 0;
  },
});

export const unpin: Command = defineCommand({
  name: 'unpin',
  arguments: 'PIN',
  description: 'Remove a pin (by the name it was pinned with, or the image ID for pins made by ID)',
  arity: { exactly: 1 },
  flags: {},
  async run({ args: [name = ''] }, ctx) {
    await ctx.client().request(`/cache/pins/${imagePath(name)}`, { method: 'DELETE' });
    ctx.stdout.write(`Unpinned: ${name}\n`);
    return 0;
  },
});

export const pins: Command = defineCommand({
  name: 'pins',
  description: 'List the pins that are in force',
  arity: { none: true },
  flags: { format: JSON_FORMAT_FLAG },
  async run({ flags }, ctx) {
    const format = jsonOnly(flags.format);
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
});
