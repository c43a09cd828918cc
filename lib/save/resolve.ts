import type { Digest } from '../digest.ts';
import { ImageCacheError, NotFoundError } from '../errors.ts';
import { resolveImage } from '../images.ts';
import { type ImageManifest, parseManifest } from '../manifest.ts';
import type { Reference, RepositoryName } from '../model.ts';
import type { ImageCatalog, ManifestRecord } from '../ports/image-catalog.ts';
import {
  familiarRepository,
  parseReference,
  repositoryName,
  withDefaultTag,
} from '../reference.ts';

export interface SavedTag {
  repository: RepositoryName;
  tag: string;
}

/** One image manifest going into a tarball, with the tags it is saved under (maybe none). */
export interface SaveItem {
  manifest: ManifestRecord;
  parsed: ImageManifest;
  tags: SavedTag[];
  /** Index manifests the tags were resolved through: touched as used, not saved. */
  sources: Digest[];
}

/**
 * Resolves `docker save` names as Docker does: a tag saves that tag; `repo@digest` saves the
 * image untagged; an image ID saves the image with all its tags. Names that reach the same
 * manifest merge. Every name is resolved before anything streams, so an unknown one is a 404.
 */
export async function resolveSaveItems(
  catalog: ImageCatalog,
  names: string[],
): Promise<SaveItem[]> {
  const byManifest = new Map<Digest, SaveItem>();
  const add = async (manifestDigest: Digest, tag: SavedTag | undefined, source?: Digest) => {
    let item = byManifest.get(manifestDigest);
    if (!item) {
      const manifest = await catalog.getManifest(manifestDigest);
      if (!manifest?.image) throw new NotFoundError(`No such image: ${manifestDigest}`);
      item = { manifest, parsed: imageManifestOf(manifest), tags: [], sources: [] };
      byManifest.set(manifestDigest, item);
    }
    if (tag && !item.tags.some((t) => t.repository === tag.repository && t.tag === tag.tag)) {
      item.tags.push(tag);
    }
    if (source && source !== manifestDigest && !item.sources.includes(source)) {
      item.sources.push(source);
    }
  };

  for (const name of names) {
    const byReference = await resolveReference(catalog, name);
    if (byReference) {
      await add(byReference.manifest, byReference.tag, byReference.source);
      continue;
    }
    // Not a stored reference: an image ID (resolveImage tries the reference again, then IDs,
    // and throws Docker's "No such image" for anything else).
    const view = await resolveImage(catalog, name);
    if (view.tags.length === 0) {
      const first = [...view.manifests].sort((a, b) => compare(a.digest, b.digest))[0];
      if (!first) throw new NotFoundError(`No such image: ${name}`);
      await add(first.digest, undefined);
    }
    for (const tag of view.tags) {
      await add(tag.manifest, { repository: tag.repository, tag: tag.tag }, tag.source);
    }
  }

  const items = [...byManifest.values()];
  for (const item of items) item.tags.sort((a, b) => compare(tagText(a), tagText(b)));
  return items.sort((a, b) => compare(a.manifest.digest, b.manifest.digest));
}

async function resolveReference(
  catalog: ImageCatalog,
  name: string,
): Promise<{ manifest: Digest; tag?: SavedTag; source?: Digest } | undefined> {
  let ref: Reference;
  try {
    ref = withDefaultTag(parseReference(name));
  } catch {
    return undefined;
  }
  const repository = repositoryName(ref);
  if (ref.digest) {
    // `repo@sha256:<index>` resolves through the digest ref to the platform manifest.
    const byRef = await catalog.getDigestRef(repository, ref.digest);
    const digest = byRef?.manifest ?? ref.digest;
    const manifest = await catalog.getManifest(digest);
    return manifest?.image ? { manifest: digest, source: ref.digest } : undefined;
  }
  const tag = await catalog.getTag(repository, ref.tag!);
  if (!tag) return undefined;
  return { manifest: tag.manifest, tag: { repository, tag: tag.tag }, source: tag.source };
}

function imageManifestOf(record: ManifestRecord): ImageManifest {
  const parsed = parseManifest(record.raw, record.mediaType);
  if (parsed.kind !== 'image') {
    throw new ImageCacheError('INTERNAL', `manifest ${record.digest} is not an image manifest`);
  }
  return parsed;
}

/** `nginx:latest`, `localhost:5000/app:1`: the RepoTags form. */
export function familiarTag(tag: SavedTag): string {
  return `${familiarRepository(tag.repository)}:${tag.tag}`;
}

function tagText(tag: SavedTag): string {
  return `${tag.repository}:${tag.tag}`;
}

/** Code-unit order, independent of locale, so archives are the same on every machine. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
