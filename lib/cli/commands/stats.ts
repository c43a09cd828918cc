/**
 * `image-cache stats`: is the cache working, what does it save, when does it fill up. Reads
 * GET /cache/stats and prints its summary for a terminal, or the server's JSON as it came.
 */

import type { StatsReport } from '../../stats/stats-report.ts';
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { humanSize, table } from '../format.ts';

/** The server's answer: the type the route builds it with, since the CLI ships beside it. */
type StatsAnswer = StatsReport;
type Figures = Partial<Record<string, number>>;

export const stats: Command = defineCommand({
  name: 'stats',
  description: 'Show hit ratio, pulls saved, traffic and storage against the budget',
  arity: { none: true },
  flags: {
    since: {
      type: 'string',
      help: 'How far back: a duration (72h) or an RFC 3339 time (default 168h, at most 35 days)',
    },
    json: { type: 'boolean', help: "Print the server's JSON answer" },
  },
  async run({ flags }, ctx) {
    const answer = await ctx.client().json<StatsAnswer>('/cache/stats', {
      query: { since: flags.since },
    });
    ctx.stdout.write(flags.json ? `${JSON.stringify(answer, null, 2)}\n` : formatStats(answer));
    return 0;
  },
});

export function formatStats(answer: StatsAnswer): string {
  const t = (name: keyof StatsAnswer['totals']) => answer.totals[name];
  const hits = t('manifestHits') + t('blobHits');
  const misses = t('manifestMisses') + t('blobMisses');
  const { storage } = answer;
  const budget =
    storage.budgetBytes === null
      ? 'no budget set'
      : `of ${humanSize(storage.budgetBytes)} budget (${percent(storage.storedBytes / storage.budgetBytes)})`;
  const lines = [
    `Window:       ${answer.since} to ${answer.until}`,
    `Hit ratio:    ${answer.hitRatio === null ? 'no lookups yet' : percent(answer.hitRatio)} (${hits} hits, ${misses} misses)`,
    `Pulls saved:  ${answer.pullsSaved} upstream manifest GETs`,
    `Served:       ${humanSize(t('bytesServed'))} from the cache`,
    `Fetched:      ${humanSize(t('bytesFetched'))} from upstreams (${t('upstreamRequests')} requests, ${t('upstreamErrors')} failed, ${t('upstreamThrottled')} throttled with 429)`,
    `Docker Hub:   ${t('hubManifestGets')} manifest GETs`,
    `Storage:      ${humanSize(storage.storedBytes)} ${budget}, ${count(storage.storedBlobs, 'blob')}, ${count(storage.images, 'image')}${storage.measuredAt ? ` (measured ${storage.measuredAt})` : ' (not measured yet)'}`,
    ...answer.upstreams
      .filter((u) => u.rateLimitRemaining !== undefined)
      .map(
        (u) =>
          `Rate limit:   ${u.registry} ${u.rateLimitRemaining} of ${u.rateLimitLimit ?? '?'} left`,
      ),
    '',
  ];
  const days = perDay(answer.hours);
  if (days.length === 0) return `${lines.join('\n')}No activity recorded in this window.\n`;
  const rows = days.map(([day, c]) => {
    const dayHits = (c.manifestHits ?? 0) + (c.blobHits ?? 0);
    const lookups = dayHits + (c.manifestMisses ?? 0) + (c.blobMisses ?? 0);
    return [
      day,
      String(c.requests ?? 0),
      lookups === 0 ? '-' : percent(dayHits / lookups),
      String(c.manifestHits ?? 0),
      humanSize(c.bytesServed ?? 0),
      humanSize(c.bytesFetched ?? 0),
      String(c.upstreamThrottled ?? 0),
    ];
  });
  return `${lines.join('\n')}${table([['DAY', 'REQUESTS', 'HIT RATIO', 'PULLS SAVED', 'SERVED', 'FETCHED', '429s'], ...rows])}`;
}

/** The hours' counters summed per UTC day, oldest first. */
function perDay(hours: StatsAnswer['hours']): [string, Figures][] {
  const days = new Map<string, Record<string, number>>();
  for (const hour of hours) {
    const day = hour.hour.slice(0, 10);
    const sums = days.get(day) ?? {};
    for (const [name, value] of Object.entries(hour.counters)) {
      sums[name] = (sums[name] ?? 0) + (value ?? 0);
    }
    days.set(day, sums);
  }
  return [...days];
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}
