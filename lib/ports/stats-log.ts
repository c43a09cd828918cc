/**
 * The cache's hourly history (issue 14): per UTC hour, what each counter grew by and the last
 * value of each gauge, so a restart or a cold Lambda does not lose the picture. Figures are named
 * by lib/metrics/names.ts; the port keeps them as plain names and numbers, so any adapter stores
 * a name it has not seen before without a schema change.
 */

/** Milliseconds in an hour: hours are keyed by their start, a multiple of this since the epoch. */
export const HOUR_MS = 3_600_000;

/** How long hours are kept; older ones are dropped (DynamoDB's TTL, SQLite on write). */
export const STATS_RETENTION_MS = 35 * 24 * HOUR_MS;

/** Figures by name; an absent name is zero (counters) or unknown (gauges). */
export type Figures = Readonly<Record<string, number | undefined>>;

/** One hour of history. */
export interface StatsHour {
  /** Start of the UTC hour, ms since the epoch. */
  hour: number;
  /** What each counter grew by during the hour. */
  counters: Record<string, number>;
  /** The last value each gauge was given during the hour. */
  gauges: Record<string, number>;
}

export interface StatsLog {
  /**
   * Adds `counters` to what the hour already holds and sets `gauges` (replacing earlier values of
   * those names only), atomically against other writers of the same hour in any process.
   */
  addHour(hourStart: number, counters: Figures, gauges: Figures): Promise<void>;
  /** Hours from `sinceHour` to `untilHour` (both included, default: every later one), oldest first. */
  listHours(sinceHour: number, untilHour?: number): Promise<StatsHour[]>;
}

/** What the storage holds now (`/cache/stats`'s storage figures). */
export interface StorageFigures {
  storedBytes: number;
  storedBlobs: number;
  images: number;
}

/**
 * An optional capability (SQLite): storage figures counted live and cheaply (an index walk), for
 * a request. A catalog without it (DynamoDB, where counting is a Scan) answers from the gauges
 * maintenance recorded.
 */
export interface LiveStorageFigures {
  storageFigures(): Promise<StorageFigures>;
}

export function liveStorageFiguresOf(catalog: object): LiveStorageFigures | undefined {
  const candidate = catalog as Partial<LiveStorageFigures>;
  return typeof candidate.storageFigures === 'function'
    ? (catalog as LiveStorageFigures)
    : undefined;
}

/** The start of the UTC hour `time` falls in. */
export function hourOf(time: number): number {
  return Math.floor(time / HOUR_MS) * HOUR_MS;
}
