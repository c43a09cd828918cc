import type { GcReport } from '../ports/gc-report-log.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import {
  hourOf,
  liveStorageFiguresOf,
  STATS_RETENTION_MS,
  type StatsHour,
  type StatsLog,
  type StorageFigures,
} from '../ports/stats-log.ts';

/**
 * The history figure that says when the storage gauges of its hour were measured (ms). Kept
 * beside the gauges rather than in GAUGE_NAMES: it is how `measuredAt` survives, not a level.
 */
export const STORAGE_MEASURED_AT = 'storageMeasuredAt';

export interface StorageAnswer extends StorageFigures {
  budgetBytes: number | null;
  /** When the figures were counted (ms); undefined when no maintenance pass recorded them yet. */
  measuredAt?: number;
}

/**
 * What is stored, without a Scan: counted live where the catalog can do so cheaply (SQLite),
 * else the latest figures a maintenance pass recorded (DynamoDB), looked up first in `hours` (a
 * window the caller read anyway) and only then in the whole kept history.
 */
export async function storageFigures(
  deps: { catalog: object; stats: StatsLog },
  hours: StatsHour[],
  budgetBytes: number | undefined,
  now: number,
): Promise<StorageAnswer> {
  const budget = budgetBytes ?? null;
  const live = liveStorageFiguresOf(deps.catalog);
  if (live) return { ...(await live.storageFigures()), budgetBytes: budget, measuredAt: now };
  const recorded =
    newestMeasured(hours) ??
    newestMeasured(await deps.stats.listHours(hourOf(now - STATS_RETENTION_MS), hourOf(now)));
  if (!recorded) return { storedBytes: 0, storedBlobs: 0, images: 0, budgetBytes: budget };
  const { gauges } = recorded;
  return {
    storedBytes: gauges.storedBytes ?? 0,
    storedBlobs: gauges.storedBlobs ?? 0,
    images: gauges.images ?? 0,
    budgetBytes: budget,
    measuredAt: gauges[STORAGE_MEASURED_AT] ?? recorded.hour,
  };
}

function newestMeasured(hours: StatsHour[]): StatsHour | undefined {
  return [...hours].reverse().find((hour) => hour.gauges.storedBytes !== undefined);
}

/**
 * The gauges a maintenance pass leaves in the history, on every backend: live counts where the
 * catalog has them, else the collection's kept tally (every blob record it read, after its
 * deletions) and the image entries (one Query on DynamoDB).
 */
export async function recordStorageGauges(
  deps: { catalog: ImageCatalog; stats: StatsLog },
  gc: GcReport,
  budgetBytes: number | undefined,
  now: number,
): Promise<StorageFigures> {
  const live = liveStorageFiguresOf(deps.catalog);
  const figures: StorageFigures = live
    ? await live.storageFigures()
    : {
        storedBytes: gc.kept.bytes,
        storedBlobs: gc.kept.blobs,
        images: (await deps.catalog.listImageEntries()).length,
      };
  await deps.stats.addHour(
    hourOf(now),
    {},
    {
      ...figures,
      ...(budgetBytes !== undefined && { budgetBytes }),
      [STORAGE_MEASURED_AT]: now,
    },
  );
  return figures;
}

/**
 * The storage gauges a flush of the stats recorder may write beside its counts, where counting
 * them is cheap (SQLite): a finer trend than the maintenance passes give. Undefined elsewhere,
 * where the last maintenance pass's figures stand.
 */
export function liveStorageGauges(
  catalog: object,
  budgetBytes: number | undefined,
  now: () => number,
): (() => Promise<Record<string, number>>) | undefined {
  const live = liveStorageFiguresOf(catalog);
  if (!live) return undefined;
  return async () => ({
    ...(await live.storageFigures()),
    ...(budgetBytes !== undefined && { budgetBytes }),
    [STORAGE_MEASURED_AT]: now(),
  });
}
