import type { Readable } from 'node:stream';
import type { Digest } from '../digest.ts';
import { BlobNotLiveError, ImageCacheError, InvalidArgumentError } from '../errors.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import type { Clock } from '../ports/clock.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import { type ArchivePlan, planArchive, streamArchive } from './archive.ts';
import { resolveSaveItems, type SaveItem } from './resolve.ts';

export interface SaveDeps {
  catalog: ImageCatalog;
  blobs: BlobStore;
  clock: Clock;
}

/** A `docker save` tarball, resolved and checked, ready to stream. */
export interface SavedTarball {
  items: SaveItem[];
  plan: ArchivePlan;
  /** Exact byte length of what `open()` streams. */
  contentLength: number;
  /** Streams the tar; call once. */
  open(): Readable;
}

/**
 * Everything that can fail cleanly fails here, before a byte is sent: unknown names (404),
 * blobs the collector is deleting (503) or that are missing. Touching each blob bumps its GC
 * generation, so a collection that marked before this save cannot delete what it streams;
 * touching the manifests marks the images as used for prune's `until` and LRU eviction.
 */
export async function prepareSave(deps: SaveDeps, names: string[]): Promise<SavedTarball> {
  if (names.length === 0) throw new InvalidArgumentError('no image names given to save');
  const items = await resolveSaveItems(deps.catalog, names);
  const plan = planArchive(items);
  const now = deps.clock.now();

  const notLive: Digest[] = [];
  for (const entry of plan.entries) {
    if (entry.kind !== 'blob') continue;
    const state = await deps.catalog.touchBlob(entry.digest, now);
    if (state === 'deleting') notLive.push(entry.digest);
    else if (state === 'absent') {
      // Older data may lack a record; the bytes themselves decide.
      const stored = await deps.blobs.stat(entry.digest);
      if (!stored) throw missingBlob(entry.digest, items);
    }
  }
  if (notLive.length > 0) throw new BlobNotLiveError(notLive);

  for (const item of items) {
    await deps.catalog.touchManifest(item.manifest.digest, now);
    for (const source of item.sources) await deps.catalog.touchManifest(source, now);
  }

  let opened = false;
  return {
    items,
    plan,
    contentLength: plan.length,
    open: () => {
      if (opened) throw new Error('a saved tarball streams once');
      opened = true;
      return streamArchive(plan, deps.blobs);
    },
  };
}

function missingBlob(digest: Digest, items: SaveItem[]): ImageCacheError {
  const owner = items.find(
    (i) => i.parsed.config.digest === digest || i.parsed.layers.some((l) => l.digest === digest),
  );
  return new ImageCacheError(
    'INTERNAL',
    `blob ${digest} of image ${owner?.manifest.digest ?? '?'} is missing from the blob store`,
  );
}
