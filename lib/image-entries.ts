/**
 * Image entries (a manifest with the tags and digest refs naming it) assembled from whole
 * listings. Adapters that keep no entries of their own (SQLite), the DynamoDB catalog before its
 * entries are backfilled, and retention (which reads the catalog whole anyway) share this.
 */
import type { Digest } from './digest.ts';
import type {
  DigestRefRecord,
  ImageEntry,
  ImageManifestEntry,
  ImageSummary,
  ImageTagEntry,
  TagRecord,
} from './ports/image-catalog.ts';

/** The parts of a manifest record an entry keeps; a full ManifestRecord fits. */
type EntryManifest = Omit<ImageManifestEntry, 'image'> & { image?: ImageSummary };

/**
 * One entry per image manifest (indexes have no summary and are left out), in the order the
 * port promises: newest first, then by digest; names by repository, then tag or digest.
 */
export function entriesOf<M extends EntryManifest>(
  manifests: readonly M[],
  tags: readonly TagRecord[],
  refs: readonly DigestRefRecord[],
): Array<ImageEntry & { manifest: M & ImageManifestEntry }> {
  const byDigest = new Map<Digest, ImageEntry & { manifest: M & ImageManifestEntry }>();
  for (const manifest of manifests) {
    if (!manifest.image) continue;
    byDigest.set(manifest.digest, {
      manifest: manifest as M & ImageManifestEntry,
      tags: [],
      digestRefs: [],
    });
  }
  for (const tag of tags) byDigest.get(tag.manifest)?.tags.push(tagEntry(tag));
  for (const ref of refs) byDigest.get(ref.manifest)?.digestRefs.push(ref);
  return sortEntries([...byDigest.values()]);
}

/** A tag as entries hold it: the record without checkedAt. */
export function tagEntry({ checkedAt: _checked, ...tag }: TagRecord): ImageTagEntry {
  return tag;
}

/** Sorts entries and their names in place, in the port's order, and answers them. */
export function sortEntries<E extends ImageEntry>(entries: E[]): E[] {
  for (const entry of entries) {
    entry.tags.sort((a, b) => compare(a.repository, b.repository) || compare(a.tag, b.tag));
    entry.digestRefs.sort(
      (a, b) => compare(a.repository, b.repository) || compare(a.digest, b.digest),
    );
  }
  return entries.sort(
    (a, b) =>
      b.manifest.createdAt - a.manifest.createdAt || compare(a.manifest.digest, b.manifest.digest),
  );
}

/** The entries of images whose ID or a manifest digest starts with `sha256:<hexPrefix>`. */
export function matchingEntries<E extends ImageEntry>(entries: E[], hexPrefix: string): E[] {
  const prefix = `sha256:${hexPrefix}`;
  const configs = new Set(
    entries
      .filter(
        (e) =>
          e.manifest.digest.startsWith(prefix) || e.manifest.image.configDigest.startsWith(prefix),
      )
      .map((e) => e.manifest.image.configDigest),
  );
  return entries.filter((e) => configs.has(e.manifest.image.configDigest));
}

/** Code-unit order, as SQLite's BINARY collation orders the ASCII names the catalog holds. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
