/** `image-cache gc`: a garbage collection now, over POST /cache/gc, and its report. */
import { flagBoolean, flagString, parseArgs, UsageError } from '../args.ts';
import type { CliContext, Command } from '../context.ts';
import { goJson, humanSize } from '../format.ts';

const usage = `Usage:  image-cache gc [OPTIONS]

Delete the blobs no image needs any more, and print what was done

Options:
      --dry-run         Report what would be deleted without deleting anything
      --format string   'json' for the report as JSON
      --grace string    Spare unreferenced blobs used more recently than this (default: the
                        server's --gc-grace), e.g. 0s or 2h
`;

interface Tally {
  blobs: number;
  bytes: number;
}

/** The server's GcReport. */
export interface GcReportEntry {
  id: string;
  trigger: string;
  dryRun: boolean;
  graceMs: number;
  startedAt: number;
  durationMs: number;
  examined: Tally;
  kept: Tally;
  deleted: Tally;
  orphans: Tally;
  staging?: { files: number; bytes: number };
  errors: string[];
}

export const gc: Command = {
  usage,
  async run(argv: string[], ctx: CliContext): Promise<number> {
    const args = parseArgs(argv, {
      'dry-run': { type: 'boolean' },
      grace: { type: 'string' },
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (flagBoolean(args, 'help')) {
      ctx.stdout.write(usage);
      return 0;
    }
    if (args.positionals.length > 0) throw new UsageError('"gc" accepts no arguments.');
    const format = flagString(args, 'format');
    if (format !== undefined && format !== 'json') {
      throw new UsageError(`unsupported format ${JSON.stringify(format)}: only 'json'`);
    }
    const report = await ctx.client().json<GcReportEntry>('/cache/gc', {
      method: 'POST',
      query: {
        dryRun: flagBoolean(args, 'dry-run') ? '1' : undefined,
        grace: flagString(args, 'grace'),
      },
    });
    if (format === 'json') {
      ctx.stdout.write(`${goJson(report)}\n`);
    } else {
      ctx.stdout.write(formatReport(report));
    }
    for (const error of report.errors) ctx.stderr.write(`error: ${error}\n`);
    return report.errors.length > 0 ? 1 : 0;
  },
};

export function formatReport(report: GcReportEntry): string {
  const tally = (t: Tally) =>
    `${t.blobs} ${t.blobs === 1 ? 'blob' : 'blobs'}, ${humanSize(t.bytes)}`;
  const orphans = report.orphans.blobs > 0 ? ` (${tally(report.orphans)} without a record)` : '';
  const staging = report.staging?.files
    ? [
        `Staging:  ${report.staging.files} unfinished ${report.staging.files === 1 ? 'write' : 'writes'} removed, ${humanSize(report.staging.bytes)}`,
      ]
    : [];
  return [
    `Examined: ${tally(report.examined)}`,
    `Kept:     ${tally(report.kept)}`,
    `${report.dryRun ? 'Would delete:' : 'Deleted:'} ${tally(report.deleted)}${orphans}`,
    ...staging,
    `Took:     ${report.durationMs}ms (grace ${report.graceMs / 1000}s)`,
    '',
  ].join('\n');
}
