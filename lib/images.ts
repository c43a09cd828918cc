import type { Digest } from './digest.ts';
import { digestHex } from './digest.ts';
import { InvalidArgumentError, NotFoundError } from './errors.ts';
import { compare, entriesOf } from './image-entries.ts';
import type {
  DigestRefRecord,
  ImageCatalog,
  ImageManifestEntry,
  ImageSummary,
  ImageTagEntry,
  ManifestRecord,
} from './ports/image-catalog.ts';
import {
  familiarRepository,
  looksLikeImageId,
  parseReference,
  repositoryName,
  withDefaultTag,
} from './reference.ts';

/**
 * An image as Docker sees it: one config digest (the image ID) with every tag and
 * `repo@digest` that leads to it. Several manifests can share a config (the same image pushed
 * as OCI and as Docker schema 2); they are one image, as in Docker. Requests build views from
 * image entries (no raw manifests); retention builds them from full records (`M`).
 */
export interface ImageView<M extends ImageManifestEntry = ImageManifestEntry> {
  id: Digest;
  manifests: M[];
  summary: ImageSummary;
  tags: ImageTagEntry[];
  digestRefs: DigestRefRecord[];
  /** `nginx:latest`, `localhost:5000/app:1`: what Docker prints. */
  repoTags: string[];
  /** `nginx@sha256:...`. */
  repoDigests: string[];
}

/** `docker image ls`: every image, from the catalog's entries (never a scan of the catalog). */
export async function listImageViews(catalog: ImageCatalog): Promise<ImageView[]> {
  return groupImageViews(await catalog.listImageEntries());
}

/**
 * Every image with its full manifest records (lastUsedAt), read the way the collector reads the
 * catalog: retention runs on the maintenance schedule, where whole listings are allowed.
 */
export async function scanImageViews(
  catalog: ImageCatalog,
): Promise<ImageView<ManifestRecord & ImageManifestEntry>[]> {
  const [manifests, tags, refs] = await Promise.all([
    catalog.listImages(),
    catalog.listTags(),
    catalog.listDigestRefs(),
  ]);
  return groupImageViews(entriesOf(manifests, tags, refs));
}

/** Groups entries by config digest, in the entries' order (the first manifest seen leads). */
export function groupImageViews<M extends ImageManifestEntry>(
  entries: ReadonlyArray<{ manifest: M; tags: ImageTagEntry[]; digestRefs: DigestRefRecord[] }>,
): ImageView<M>[] {
  const views = new Map<Digest, ImageView<M>>();
  for (const { manifest, tags, digestRefs } of entries) {
    const summary = manifest.image;
    let view = views.get(summary.configDigest);
    if (!view) {
      view = {
        id: summary.configDigest,
        manifests: [],
        summary,
        tags: [],
        digestRefs: [],
        repoTags: [],
        repoDigests: [],
      };
      views.set(summary.configDigest, view);
    }
    view.manifests.push(manifest);
    view.tags.push(...tags);
    view.digestRefs.push(...digestRefs);
  }
  for (const view of views.values()) {
    // Names in the order the whole listings had them: by repository, then tag or digest.
    view.tags.sort((a, b) => compare(a.repository, b.repository) || compare(a.tag, b.tag));
    view.digestRefs.sort(
      (a, b) => compare(a.repository, b.repository) || compare(a.digest, b.digest),
    );
    view.repoTags = view.tags.map((t) => `${familiarRepository(t.repository)}:${t.tag}`).sort();
    view.repoDigests = [
      ...new Set(view.digestRefs.map((r) => `${familiarRepository(r.repository)}@${r.digest}`)),
    ].sort();
  }
  return [...views.values()];
}

/** The image with this ID, read afresh from its entries; undefined once it is gone. */
export async function findImageView(
  catalog: ImageCatalog,
  id: Digest,
): Promise<ImageView | undefined> {
  return groupImageViews(await catalog.findImageEntries(digestHex(id))).find((v) => v.id === id);
}

/**
 * Resolves `{name}` as Docker does: a reference (`nginx`, `nginx:1`, `repo@sha256:...`) first,
 * then a full or short image ID (`sha256:<hex>`, or at least a few hex characters). Reads only
 * the entries of the images in question, so its cost does not grow with the catalog.
 */
export async function resolveImage(catalog: ImageCatalog, name: string): Promise<ImageView> {
  const manifest = await findByReference(catalog, name);
  if (manifest?.image) {
    const view = await findImageView(catalog, manifest.image.configDigest);
    if (view) return view;
  }
  if (looksLikeImageId(name)) {
    const hex = name.replace(/^sha256:/, '');
    const matches = groupImageViews(await catalog.findImageEntries(hex)).filter(
      (v) =>
        digestHex(v.id).startsWith(hex) ||
        v.manifests.some((m) => digestHex(m.digest).startsWith(hex)),
    );
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new InvalidArgumentError(
        `image ID ${name} is ambiguous: it matches ${matches.length} images`,
      );
    }
  }
  throw new NotFoundError(`No such image: ${name}`);
}

async function findByReference(
  catalog: ImageCatalog,
  name: string,
): Promise<ManifestRecord | undefined> {
  let ref: ReturnType<typeof parseReference>;
  try {
    ref = parseReference(name);
  } catch {
    return undefined;
  }
  const repository = repositoryName(ref);
  if (ref.digest) {
    const byRef = await catalog.getDigestRef(repository, ref.digest);
    const manifest = await catalog.getManifest(byRef?.manifest ?? ref.digest);
    return manifest?.image ? manifest : undefined;
  }
  const tag = await catalog.getTag(repository, withDefaultTag(ref).tag!);
  return tag ? catalog.getManifest(tag.manifest) : undefined;
}
