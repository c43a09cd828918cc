/**
 * What `GET /cache/stats` answers: the hourly history of a window with its totals, the hit
 * ratio and pulls saved over it, the storage figures and the upstreams' rate-limit headroom.
 * The shape is the contract the dashboard and CI scripts read (docs/usage.md#cache-stats).
 */
import { parseDuration } from '../duration.ts';
import { InvalidArgumentError } from '../errors.ts';
import {
  COUNTER_NAMES,
  type CounterTotals,
  GAUGE_NAMES,
  hitRatio,
  pullsSaved,
  type UpstreamHeadroom,
} from '../metrics/names.ts';
import { zeroTotals } from '../metrics/stats-recorder.ts';
import { hourOf, STATS_RETENTION_MS, type StatsHour, type StatsLog } from '../ports/stats-log.ts';
import { storageFigures } from './storage-figures.ts';

/** The window when `since` is not given: a week. */
export const DEFAULT_STATS_WINDOW_MS = 168 * 3_600_000;

// RFC 3339 date-time (what Date.parse reads as well, but stricter: no bare dates or local times).
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export interface StatsReport {
  since: string;
  until: string;
  hours: { hour: string; counters: Partial<CounterTotals>; gauges: Record<string, number> }[];
  totals: CounterTotals;
  hitRatio: number | null;
  pullsSaved: number;
  storage: {
    storedBytes: number;
    storedBlobs: number;
    images: number;
    budgetBytes: number | null;
    measuredAt: string | null;
  };
  upstreams: (Omit<UpstreamHeadroom, 'observedAt'> & { observedAt?: string })[];
}

export interface StatsDeps {
  catalog: object;
  stats: StatsLog;
}

/**
 * The start of the window `since` names: an RFC 3339 time, or a Go duration back from `now`.
 * Refused when it is not one, lies ahead, or reaches past the 35 days the history keeps.
 */
export function parseSince(text: string | null, now: number): number {
  if (text === null || text === '') return now - DEFAULT_STATS_WINDOW_MS;
  const since = RFC3339.test(text) ? rfc3339(text) : durationBack(text, now);
  if (since === undefined) {
    throw new InvalidArgumentError(
      `invalid since ${JSON.stringify(text)}: give an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (72h)`,
    );
  }
  if (since > now) throw new InvalidArgumentError(`since ${JSON.stringify(text)} is in the future`);
  if (since < now - STATS_RETENTION_MS) {
    throw new InvalidArgumentError(
      `since ${JSON.stringify(text)} reaches back more than 35 days, longer than the history is kept`,
    );
  }
  return since;
}

/** The time, unless a field is out of range (Date.parse rolls 02-30 over into March). */
function rfc3339(text: string): number | undefined {
  const time = Date.parse(text.toUpperCase());
  const [, y, mo, d, h, mi, s] =
    /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/i.exec(text) ?? [];
  const fields = new Date(
    Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)),
  );
  const exact =
    fields.getUTCDate() === Number(d) &&
    fields.getUTCHours() === Number(h) &&
    fields.getUTCMinutes() === Number(mi) &&
    fields.getUTCSeconds() === Number(s);
  return exact && !Number.isNaN(time) ? time : undefined;
}

function durationBack(text: string, now: number): number | undefined {
  try {
    return now - parseDuration(text);
  } catch (error) {
    if (error instanceof InvalidArgumentError) return undefined;
    throw error;
  }
}

/** The report from the hour `since` falls in to the current hour. */
export async function statsReport(
  deps: StatsDeps,
  window: { since: number; now: number },
  extras: { budgetBytes: number | undefined; upstreams: UpstreamHeadroom[] },
): Promise<StatsReport> {
  const from = hourOf(window.since);
  const hours = await deps.stats.listHours(from, hourOf(window.now));
  const totals = sumCounters(hours);
  const storage = await storageFigures(deps, hours, extras.budgetBytes, window.now);
  const { measuredAt, ...figures } = storage;
  return {
    since: iso(from),
    until: iso(window.now),
    hours: hours.map((hour) => ({
      hour: iso(hour.hour),
      counters: pick(hour.counters, COUNTER_NAMES),
      gauges: pick(hour.gauges, GAUGE_NAMES),
    })),
    totals,
    hitRatio: hitRatio(totals) ?? null,
    pullsSaved: pullsSaved(totals),
    storage: { ...figures, measuredAt: measuredAt === undefined ? null : iso(measuredAt) },
    upstreams: extras.upstreams.map(({ observedAt, ...headroom }) => ({
      ...headroom,
      ...(observedAt !== undefined && { observedAt: iso(observedAt) }),
    })),
  };
}

function sumCounters(hours: StatsHour[]): CounterTotals {
  const totals = zeroTotals();
  for (const hour of hours) {
    for (const name of COUNTER_NAMES) totals[name] += hour.counters[name] ?? 0;
  }
  return totals;
}

/** Only the figures `names` lists: the history may hold others (STORAGE_MEASURED_AT). */
function pick<N extends string>(
  figures: Record<string, number>,
  names: readonly N[],
): Partial<Record<N, number>> {
  const picked: Partial<Record<N, number>> = {};
  for (const name of names) {
    const value = figures[name];
    if (value !== undefined) picked[name] = value;
  }
  return picked;
}

function iso(time: number): string {
  return new Date(time).toISOString();
}
