/** `image-cache gc`: a garbage collection now, over POST /cache/gc, and its report. */
import { defineCommand, jsonOnly } from '../command.ts';
import type { Command } from '../context.ts';
import { goJson, humanSize } from '../format.ts';

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

export const gc: Command = defineCommand({
  name: 'gc',
  description: 'Delete the blobs no image needs any more, and print what was done',
  arity: { none: true },
  flags: {
    'dry-run': {
      type: 'boolean',
      help: 'Report what would be deleted without deleting anything',
    },
    format: { type: 'string', help: "'json' for the report as JSON" },
    grace: {
      type: 'string',
      help: `Spare unreferenced blobs used more recently than this (default: the
server's --gc-grace), e.g. 0s or 2h`,
    },
  },
  async run({ flags }, ctx) {
    const format = jsonOnly(flags.format);
    const report = await ctx.client().json<GcReportEntry>('/cache/gc', {
      method: 'POST',
      query: { dryRun: flags['dry-run'] ? '1' : undefined, grace: flags.grace },
    });
    if (format === 'json') {
      ctx.stdout.write(`${goJson(report)}\n`);
    } else {
      ctx.stdout.write(formatReport(report));
    }
    for (const error of report.errors) ctx.stderr.write(`error: ${error}\n`);
    return report.errors.length > 0 ? 1 : 0;
  },
});

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
