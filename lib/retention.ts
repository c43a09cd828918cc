/**
 * Retention for a cache that must not grow without bound: images not pulled (or saved) for
 * longer than a maximum age go, then the least recently used ones until the blobs the remaining
 * images need fit a storage budget. Pinned images are never evicted. An eviction is a forced
 * `rmi` by ID that leaves pins alone (a pin added meanwhile still keeps the manifest: the
 * catalog checks pins when it deletes the record), followed by the collector over the freed
 * blobs with grace zero.
 */
import type { Digest } from './digest.ts';
import { formatDuration } from './duration.ts';
import { InvalidArgumentError } from './errors.ts';
import { collectGarbage, type GcDeps } from './gc.ts';
import { type ImageView, scanImageViews } from './images.ts';
import type { GcReport } from './ports/gc-report-log.ts';
import type { ImageManifestEntry, ManifestRecord } from './ports/image-catalog.ts';
import type { StatsLog } from './ports/stats-log.ts';
import type { CollectFreed } from './prune.ts';
import { type DeleteResponseItem, ImageRemoval } from './removal/remove-image.ts';
import { recordStorageGauges } from './stats/storage-figures.ts';

export interface RetentionSettings {
  /** Budget for the bytes of the blobs images need; undefined means no budget. */
  maxBytes?: number;
  /** Longest time since an image was last pulled or saved; undefined means forever. */
  maxAgeMs?: number;
}

/** An image with its full manifest records: retention needs each manifest's lastUsedAt. */
export type StoredImageView = ImageView<ManifestRecord & ImageManifestEntry>;

export type EvictionReason = 'max-age' | 'max-bytes';

export interface Eviction {
  view: StoredImageView;
  reason: EvictionReason;
  lastUsedAt: number;
  /** Bytes that only this image (of those kept so far) needed. */
  bytes: number;
}

export interface EvictionPlan {
  evictions: Eviction[];
  /** Bytes of the blobs all images need, before and after the planned evictions. */
  storedBefore: number;
  storedAfter: number;
}

/** When an image was last used: the latest pull or save of any of its manifests. */
export function lastUsed(view: StoredImageView): number {
  return Math.max(...view.manifests.map((m) => m.lastUsedAt));
}

/**
 * Decides what to evict, without changing anything. Shared layers are counted once, and an image
 * frees only the blobs no kept image needs, so the plan stops as soon as the kept images fit.
 */
export function planEvictions(
  views: readonly StoredImageView[],
  blobSizes: ReadonlyMap<Digest, number>,
  isPinned: (view: StoredImageView) => boolean,
  settings: RetentionSettings,
  now: number,
): EvictionPlan {
  const users = new Map<Digest, number>();
  const blobsOf = (view: StoredImageView) => new Set(view.manifests.flatMap((m) => m.blobs));
  let stored = 0;
  for (const view of views) {
    for (const blob of blobsOf(view)) {
      const count = users.get(blob) ?? 0;
      if (count === 0) stored += blobSizes.get(blob) ?? 0;
      users.set(blob, count + 1);
    }
  }
  const storedBefore = stored;
  const evictions: Eviction[] = [];
  const evict = (view: StoredImageView, reason: EvictionReason) => {
    let bytes = 0;
    for (const blob of blobsOf(view)) {
      const count = (users.get(blob) ?? 1) - 1;
      users.set(blob, count);
      if (count === 0) bytes += blobSizes.get(blob) ?? 0;
    }
    stored -= bytes;
    evictions.push({ view, reason, lastUsedAt: lastUsed(view), bytes });
  };

  // Least recently used first; the ID breaks ties so a plan is reproducible.
  const candidates = views
    .filter((v) => !isPinned(v))
    .sort((a, b) => lastUsed(a) - lastUsed(b) || (a.id < b.id ? -1 : 1));
  const kept: StoredImageView[] = [];
  for (const view of candidates) {
    if (settings.maxAgeMs !== undefined && now - lastUsed(view) > settings.maxAgeMs) {
      evict(view, 'max-age');
    } else {
      kept.push(view);
    }
  }
  if (settings.maxBytes !== undefined) {
    for (const view of kept) {
      if (stored <= settings.maxBytes) break;
      evict(view, 'max-bytes');
    }
  }
  return { evictions, storedBefore, storedAfter: stored };
}

export interface RetentionReport {
  Evicted: Array<{
    Id: string;
    RepoTags: string[];
    LastUsed: string;
    Reason: EvictionReason;
    Size: number;
  }>;
  ImagesDeleted: DeleteResponseItem[] | null;
  SpaceReclaimed: number;
  StoredBytes: { Before: number; After: number };
  MaxBytes: number | null;
  MaxAge: string | null;
}

/** Plans and carries out one retention pass: `POST /cache/retention` and the GC schedule. */
export async function applyRetention(
  deps: GcDeps,
  settings: RetentionSettings,
  collect: CollectFreed,
): Promise<RetentionReport> {
  const { catalog } = deps;
  const now = deps.clock.now();
  const removal = await ImageRemoval.start(catalog, now);
  const [views, blobs] = await Promise.all([scanImageViews(catalog), catalog.listBlobs()]);
  const sizes = new Map(blobs.filter((b) => b.state === 'live').map((b) => [b.digest, b.size]));
  const plan = planEvictions(views, sizes, (v) => removal.pinsOf(v).length > 0, settings, now);

  const evicted: RetentionReport['Evicted'] = [];
  for (const eviction of plan.evictions) {
    if (await usedSincePlanned(deps, eviction)) continue;
    if (!(await removal.evict(eviction.view))) continue;
    evicted.push({
      Id: eviction.view.id,
      RepoTags: eviction.view.repoTags,
      LastUsed: new Date(eviction.lastUsedAt).toISOString(),
      Reason: eviction.reason,
      Size: eviction.bytes,
    });
  }
  const outcome = await removal.finish();
  const report = outcome.freed.length > 0 ? await collect(outcome.freed) : undefined;
  return {
    Evicted: evicted,
    ImagesDeleted: outcome.items.length > 0 ? outcome.items : null,
    SpaceReclaimed: report?.deleted.bytes ?? 0,
    StoredBytes: { Before: plan.storedBefore, After: plan.storedAfter },
    MaxBytes: settings.maxBytes ?? null,
    MaxAge: settings.maxAgeMs === undefined ? null : formatDuration(settings.maxAgeMs),
  };
}

/** A pull that landed after the plan was made wins: the image is not least recently used now. */
async function usedSincePlanned(deps: GcDeps, eviction: Eviction): Promise<boolean> {
  for (const manifest of eviction.view.manifests) {
    const current = await deps.catalog.getManifest(manifest.digest);
    if (current && current.lastUsedAt > manifest.lastUsedAt) return true;
  }
  return false;
}

export interface MaintenanceSettings extends RetentionSettings {
  gcGraceMs: number;
}

/**
 * One scheduled pass: the image entries older records lack (a no-op once written), retention
 * (when configured), a full collection with the grace window, then the storage figures it
 * leaves in the history (what `/cache/stats` answers on DynamoDB, where counting is a Scan).
 */
export async function runMaintenance(
  deps: GcDeps & { stats: StatsLog },
  settings: MaintenanceSettings,
  collect: CollectFreed,
): Promise<{ retention?: RetentionReport; gc: GcReport }> {
  await deps.catalog.backfillImageEntries();
  const retention =
    settings.maxBytes !== undefined || settings.maxAgeMs !== undefined
      ? await applyRetention(deps, settings, collect)
      : undefined;
  const gc = await collectGarbage(deps, { graceMs: settings.gcGraceMs, trigger: 'schedule' });
  await recordStorageGauges(deps, gc, settings.maxBytes, deps.clock.now());
  return { ...(retention && { retention }), gc };
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  p: 1e15,
  pb: 1e15,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  pib: 2 ** 50,
};

/**
 * A storage size as operators write it: `50GB` and `50G` are decimal (as docker prints sizes),
 * `50GiB` binary, a bare number is bytes. Case does not matter.
 */
export function parseByteSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const scale = match ? BYTE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || scale === undefined) {
    throw new InvalidArgumentError(
      `invalid size ${JSON.stringify(text)}: use a number and a unit, e.g. 500MB, 50GB or 1TiB`,
    );
  }
  const bytes = Math.floor(Number(match[1]) * scale);
  if (!Number.isSafeInteger(bytes)) {
    throw new InvalidArgumentError(`invalid size ${JSON.stringify(text)}: too large`);
  }
  return bytes;
}
