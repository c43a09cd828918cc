/** `image-cache history`: `docker image history` over GET /images/{name}/history. */
import { flagBoolean, flagString, parseArgs, UsageError } from '../args.ts';
import type { CliContext, Command } from '../context.ts';
import { createdSince, ellipsis, humanSizeWithPrecision, rfc3339 } from '../format.ts';
import { imagePath } from '../http.ts';
import { renderRows } from '../template.ts';

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

const usage = `Usage:  image-cache history [OPTIONS] IMAGE

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
`;

function shortId(id: string, noTrunc: boolean): string {
  if (noTrunc) return id;
  const colon = id.indexOf(':');
  return (colon === -1 ? id : id.slice(colon + 1)).slice(0, 12);
}

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
    ID: shortId(entry.Id, options.noTrunc),
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

export const history: Command = {
  usage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, {
      format: { type: 'string' },
      human: { type: 'boolean', short: 'H', default: true },
      'no-trunc': { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(usage);
      return 0;
    }
    const [name, ...extra] = args.positionals;
    if (!name || extra.length > 0) throw new UsageError('"history" requires exactly 1 argument.');
    const entries = await ctx.client().json<HistoryEntry[]>(`/images/${imagePath(name)}/history`);
    const format = flagString(args, 'format');
    ctx.stdout.write(
      renderHistory(Array.isArray(entries) ? entries : [], {
        human: flagBoolean(args, 'human'),
        noTrunc: flagBoolean(args, 'no-trunc'),
        quiet: flagBoolean(args, 'quiet'),
        now: ctx.now(),
        ...(format === undefined ? {} : { format }),
      }),
    );
    return 0;
  },
};
