/**
 * `POST /images/prune` with moby's semantics (daemon/images/image_prune.go): by default the
 * dangling images (no tag); with `dangling=false` every image (`docker image prune -a`); narrowed
 * by `until` (the image's creation time, from its config), `label` and `label!`. Pinned images
 * are never candidates, as Docker skips images a container uses. Each image goes through the same
 * removal as `docker rmi` without force, then the collector runs over exactly the blobs of the
 * deleted manifests, and SpaceReclaimed is what that run removed from the blob store.
 */
import { type Digest, shortId } from './digest.ts';
import { parseDuration } from './duration.ts';
import { ImageCacheError, InvalidArgumentError } from './errors.ts';
import { booleanFilter, type Filters, matchesLabel, parseFilters } from './filters.ts';
import { type ImageView, listImageViews } from './images.ts';
import type { GcReport } from './ports/gc-report-log.ts';
import type { ImageCatalog } from './ports/image-catalog.ts';
import { fullRef, refsOf } from './removal/refs.ts';
import { type DeleteResponseItem, ImageRemoval } from './removal/remove-image.ts';

export const PRUNE_FILTERS = ['dangling', 'until', 'label', 'label!'];

export interface PruneResult {
  ImagesDeleted: DeleteResponseItem[] | null;
  SpaceReclaimed: number;
}

/** Runs the collector over the blobs a removal freed; prune, rmi and retention share it. */
export type CollectFreed = (digests: Digest[]) => Promise<GcReport>;

export async function pruneImages(
  catalog: ImageCatalog,
  rawFilters: string | null,
  collect: CollectFreed,
  now: number,
): Promise<PruneResult> {
  const filters = parseFilters(rawFilters, PRUNE_FILTERS);
  const danglingOnly = booleanFilter(filters, 'dangling') ?? true;
  const until = untilFilter(filters, now);

  const removal = await ImageRemoval.start(catalog, now);
  const views = await listImageViews(catalog);
  for (const view of views.sort(byId)) {
    if (removal.pinsOf(view).length > 0) continue;
    if (danglingOnly && view.tags.length > 0) continue;
    if (until !== undefined) {
      const created = view.summary.created ? Date.parse(view.summary.created) : Number.NaN;
      if (Number.isNaN(created) || created > until) continue;
    }
    if (!matchLabels(filters, view.summary.labels)) continue;
    await pruneOne(removal, view);
  }
  const outcome = await removal.finish();
  const report = outcome.freed.length > 0 ? await collect(outcome.freed) : undefined;
  return {
    // Docker sends null, not [], when nothing was deleted.
    ImagesDeleted: outcome.items.length > 0 ? outcome.items : null,
    SpaceReclaimed: report?.deleted.bytes ?? 0,
  };
}

/**
 * As moby: an image with names is removed name by name (the last one deletes it), one without
 * by ID; a conflict or a name that vanished meanwhile skips the image, never fails the prune.
 */
async function pruneOne(removal: ImageRemoval, view: ImageView): Promise<void> {
  try {
    const refs = refsOf(view);
    if (refs.length === 0) {
      await removal.removeById(view, false);
      return;
    }
    for (const ref of refs) {
      // Digest references go with their repository's last tag: not removed twice.
      if (removal.wasRemoved(ref)) continue;
      await removal.removeByRef(view, ref, false, fullRef(ref));
    }
  } catch (error) {
    if (
      error instanceof ImageCacheError &&
      (error.code === 'CONFLICT' || error.code === 'NOT_FOUND')
    ) {
      return;
    }
    throw error;
  }
}

/** moby's matchLabels: every `label` must match; the image is skipped if all `label!` match. */
function matchLabels(filters: Filters, labels: Record<string, string>): boolean {
  const wanted = filters.get('label') ?? [];
  if (!wanted.every((l) => matchesLabel(labels, l))) return false;
  const unwanted = filters.get('label!') ?? [];
  return !(unwanted.length > 0 && unwanted.every((l) => matchesLabel(labels, l)));
}

function untilFilter(filters: Filters, now: number): number | undefined {
  const values = filters.get('until');
  if (!values || values.length === 0) return undefined;
  if (values.length > 1) throw new InvalidArgumentError('more than one until filter specified');
  return parseTimestamp(values[0]!, now);
}

/**
 * Docker's `until` values (timetypes.GetTimestamp): a Go duration back from now (`24h`), an
 * RFC 3339 time or date (`2024-01-02`, `2024-01-02T15:04:05Z`), or Unix seconds (`1700000000.5`).
 * Answers milliseconds since the epoch.
 */
export function parseTimestamp(value: string, now: number): number {
  const text = value.trim();
  if (text !== '0' && /^[\d.]+[a-zµμ]/.test(text)) {
    try {
      return now - parseDuration(text);
    } catch {
      // Not a duration after all: try the other forms.
    }
  }
  if (/^\d+(\.\d+)?$/.test(text)) return Math.floor(Number(text) * 1000);
  if (text.includes('-')) {
    const ms = Date.parse(text);
    if (!Number.isNaN(ms)) return ms;
  }
  throw new InvalidArgumentError(
    `failed to parse value as time or duration: ${JSON.stringify(value)}`,
  );
}

function byId(a: ImageView, b: ImageView): number {
  return shortId(a.id) < shortId(b.id) ? -1 : shortId(a.id) > shortId(b.id) ? 1 : 0;
}
