/** `image-cache history`: `docker image history` over GET /images/{name}/history. */
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import {
  createdSince,
  ellipsis,
  humanSizeWithPrecision,
  rfc3339,
  shortImageId,
} from '../format.ts';
import { imagePath } from '../http.ts';
import { LIST_FORMAT_HELP, renderRows } from '../template.ts';

/** One entry of GET /images/{name}/history, newest layer first. */
export interface HistoryEntry {
  Id: string;
  Created: number;
  CreatedBy: string;
  Tags?: string[] | null;
  Size: number;
  Comment: string;
}

export interface HistoryRow {
  Comment: string;
  CreatedAt: string;
  CreatedBy: string;
  CreatedSince: string;
  ID: string;
  Size: string;
}

const HEADERS: Record<string, string> = {
  Comment: 'COMMENT',
  CreatedAt: 'CREATED AT',
  CreatedBy: 'CREATED BY',
  CreatedSince: 'CREATED',
  ID: 'IMAGE',
  Size: 'SIZE',
};

const TABLE_HUMAN = 'table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}';
const TABLE_RAW = 'table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}';

export function historyRow(
  entry: HistoryEntry,
  options: { human: boolean; noTrunc: boolean; now: number },
): HistoryRow {
  const createdBy = entry.CreatedBy.replaceAll('\t', ' ');
  const createdAt = rfc3339(entry.Created);
  return {
    Comment: entry.Comment ?? '',
    CreatedAt: createdAt,
    CreatedBy: options.noTrunc ? createdBy : ellipsis(createdBy, 45),
    CreatedSince: options.human ? createdSince(entry.Created, options.now) : createdAt,
    ID: shortImageId(entry.Id, options.noTrunc),
    Size: options.human ? humanSizeWithPrecision(entry.Size, 3) : String(entry.Size),
  };
}

export function renderHistory(
  entries: readonly HistoryEntry[],
  options: { human: boolean; noTrunc: boolean; quiet: boolean; format?: string; now: number },
): string {
  const rows = entries.map((e) => historyRow(e, options));
  if (options.quiet) return rows.map((r) => `${r.ID}\n`).join('');
  return renderRows(rows, options.format, options.human ? TABLE_HUMAN : TABLE_RAW, HEADERS);
}

export const history: Command = defineCommand({
  name: 'history',
  arguments: 'IMAGE',
  description: 'Show the history of an image',
  arity: { exactly: 1 },
  flags: {
    format: { type: 'string', help: LIST_FORMAT_HELP },
    human: {
      type: 'boolean',
      short: 'H',
      default: true,
      help: 'Print sizes and dates in human readable format',
    },
    'no-trunc': { type: 'boolean', help: "Don't truncate output" },
    quiet: { type: 'boolean', short: 'q', help: 'Only show image IDs' },
  },
  async run({ flags, args: [name = ''] }, ctx) {
    const entries = await ctx.client().json<HistoryEntry[]>(`/images/${imagePath(name)}/history`);
    ctx.stdout.write(
      renderHistory(Array.isArray(entries) ? entries : [], {
        human: flags.human,
        noTrunc: flags['no-trunc'],
        quiet: flags.quiet,
        now: ctx.now(),
        ...(flags.format === undefined ? {} : { format: flags.format }),
      }),
    );
    return 0;
  },
});
