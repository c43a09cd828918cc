/**
 * What the watch routes do: add or change a watch (starting the pull at once when the image is
 * not stored: a user asked, so it is not background work), remove one with its pins, and the
 * listing with each registry's pause and budget.
 */
import { formatDuration } from '../duration.ts';
import { ConflictError, NotFoundError } from '../errors.ts';
import type { Jobs } from '../jobs/jobs.ts';
import { startPullJob } from '../jobs/pull-job.ts';
import { parsePlatform } from '../manifest.ts';
import type { Clock } from '../ports/clock.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import type { JobStore } from '../ports/job-store.ts';
import { hourOf } from '../ports/stats-log.ts';
import { MAX_WATCHES, type WatchRecord, type WatchStore } from '../ports/watch-store.ts';
import { familiarString, formatReference, repositoryName } from '../reference.ts';
import { type BackgroundBudgets, budgetFor } from './background-budget.ts';
import { nextSlot } from './schedule.ts';
import { storedImages } from './stored-images.ts';
import { dropWatchPins, keepWatchPins, pinsByName } from './watch-pins.ts';
import { parseWatchSettings, type WatchLimits, watchedReference } from './watch-settings.ts';

export interface WatchServiceDeps {
  watches: WatchStore;
  catalog: ImageCatalog;
  jobStore: JobStore;
  clock: Clock;
  registries: ReadonlyMap<string, URL>;
  limits: WatchLimits;
  budgets: BackgroundBudgets;
  jobs?: Jobs;
}

/** A watch as GET /cache/watch shows it. */
export interface WatchView {
  name: string;
  /** As the docker CLI writes it: `nginx:1.27`. */
  reference: string;
  every: string;
  platforms: string[];
  pin: boolean;
  createdAt: string;
  lastCheck: string | null;
  lastChange: string | null;
  nextCheck: string;
  lastError: string | null;
  digest: string | null;
  jobs: string[];
}

export interface RegistryBackgroundView {
  registry: string;
  pullsPerHour: number;
  /** Background pulls counted this clock hour. */
  pullsThisHour: number;
  reserve: string;
  pausedUntil: string | null;
  pauseReason: string | null;
}

/** A started pull at PUT time, as POST /cache/warm lists its jobs. */
export interface StartedPull {
  platform?: string;
  id: string;
}

/** A change of settings is due at once when the image is missing; otherwise on its slot. */
const FIRST_FOLLOW_UP_MS = 60_000;

export async function putWatch(
  deps: WatchServiceDeps,
  name: string,
  query: URLSearchParams,
): Promise<{ watch: WatchView; created: boolean; pulls: StartedPull[] }> {
  const { watches, catalog, clock } = deps;
  const settings = parseWatchSettings(name, query, deps.registries, deps.limits);
  const existing = await watches.getWatch(settings.name);
  if (!existing && (await watches.listWatches()).length >= MAX_WATCHES) {
    throw new ConflictError(
      `this cache already watches ${MAX_WATCHES} references, the most it keeps`,
    );
  }
  const now = clock.now();
  const ref = watchedReference(settings.name);
  const tag = await catalog.getTag(repositoryName(ref), ref.tag!);
  const stored = tag
    ? await storedImages(catalog, tag, tag.source, settings.platforms)
    : new Map<string, never>();
  const missing = (settings.platforms.length > 0 ? settings.platforms : ['']).filter(
    (p) => !stored.has(p),
  );
  // Missing images are pulled now; the check after it pins them and confirms the tag.
  const nextCheckAt =
    missing.length > 0
      ? now + Math.min(settings.everyMs, FIRST_FOLLOW_UP_MS)
      : nextSlot(settings.name, settings.everyMs, now);
  const { record, created } = await watches.putWatch(settings, now, nextCheckAt);
  // Pins the watch no longer keeps (pin=0, or platforms that changed their names) go; pins
  // that keep their names are moved in place, so the image is never unpinned in between.
  const samePlatforms = existing?.platforms.join() === settings.platforms.join();
  if (existing?.pin && !(settings.pin && samePlatforms)) await dropWatchPins(catalog, existing);
  if (settings.pin) await keepWatchPins(catalog, settings, stored, now, await pinsByName(catalog));
  const pulls: StartedPull[] = [];
  if (missing.length > 0 && deps.jobs) {
    for (const platform of missing) {
      const job = await startPullJob(
        deps,
        deps.jobs,
        ref,
        platform ? parsePlatform(platform) : undefined,
      );
      pulls.push({ ...(platform && { platform }), id: job.id });
    }
    // Recorded as the watch's change, so its next check waits for these pulls instead of
    // spending the background budget on joining them.
    await watches.recordWatchCheck(settings.name, {
      checkedAt: now,
      nextCheckAt,
      change: { at: now, jobs: pulls.map((pull) => pull.id) },
    });
  }
  const current = pulls.length > 0 ? await watches.getWatch(settings.name) : record;
  return { watch: watchView(current ?? record), created, pulls };
}

export async function deleteWatch(deps: WatchServiceDeps, name: string): Promise<void> {
  const removed = await deps.watches.deleteWatch(watchedName(name));
  if (!removed) throw new NotFoundError(`not watched: ${name}`);
  if (removed.pin) await dropWatchPins(deps.catalog, removed);
}

export async function listWatches(deps: WatchServiceDeps): Promise<{
  watches: WatchView[];
  registries: RegistryBackgroundView[];
}> {
  const now = deps.clock.now();
  const [records, pauses] = await Promise.all([
    deps.watches.listWatches(),
    deps.watches.listRegistryPauses(),
  ]);
  const names = [...new Set([...records.map((w) => w.registry), ...pauses.map((p) => p.registry)])];
  const registries = await Promise.all(
    names.sort().map(async (registry): Promise<RegistryBackgroundView> => {
      const budget = budgetFor(deps.budgets, registry);
      const pause = pauses.find((p) => p.registry === registry && p.until > now);
      return {
        registry,
        pullsPerHour: budget.pullsPerHour,
        pullsThisHour: await deps.watches.backgroundPulls(registry, hourOf(now)),
        reserve: `${Math.round(budget.reserve * 100)}%`,
        pausedUntil: pause ? iso(pause.until) : null,
        pauseReason: pause?.reason ?? null,
      };
    }),
  );
  return { watches: records.map(watchView), registries };
}

/** The stored name of what a user typed: `nginx` -> `docker.io/library/nginx:latest`. */
export function watchedName(name: string): string {
  return formatReference(watchedReference(name));
}

export function watchView(record: WatchRecord): WatchView {
  return {
    name: record.name,
    reference: familiarString(watchedReference(record.name)),
    every: formatDuration(record.everyMs),
    platforms: record.platforms,
    pin: record.pin,
    createdAt: iso(record.createdAt),
    lastCheck: record.lastCheckAt === undefined ? null : iso(record.lastCheckAt),
    lastChange: record.lastChangeAt === undefined ? null : iso(record.lastChangeAt),
    nextCheck: iso(record.nextCheckAt),
    lastError: record.lastError ?? null,
    digest: record.lastDigest ?? null,
    jobs: record.lastJobs ?? [],
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
