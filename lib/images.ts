import type { Digest } from './digest.ts';
import { digestHex } from './digest.ts';
import { InvalidArgumentError, NotFoundError } from './errors.ts';
import type {
  DigestRefRecord,
  ImageCatalog,
  ImageSummary,
  ManifestRecord,
  TagRecord,
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
 * as OCI and as Docker schema 2); they are one image, as in Docker.
 */
export interface ImageView {
  id: Digest;
  manifests: ManifestRecord[];
  summary: ImageSummary;
  tags: TagRecord[];
  digestRefs: DigestRefRecord[];
  /** `nginx:latest`, `localhost:5000/app:1`: what Docker prints. */
  repoTags: string[];
  /** `nginx@sha256:...`. */
  repoDigests: string[];
}

export async function listImageViews(catalog: ImageCatalog): Promise<ImageView[]> {
  const [manifests, tags, refs] = await Promise.all([
    catalog.listImages(),
    catalog.listTags(),
    catalog.listDigestRefs(),
  ]);
  const byManifest = new Map(manifests.map((m) => [m.digest, m]));
  const views = new Map<Digest, ImageView>();
  for (const manifest of manifests) {
    const summary = manifest.image;
    if (!summary) continue;
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
  }
  const viewOf = (manifestDigest: Digest) => {
    const id = byManifest.get(manifestDigest)?.image?.configDigest;
    return id ? views.get(id) : undefined;
  };
  for (const tag of tags) {
    const view = viewOf(tag.manifest);
    if (!view) continue;
    view.tags.push(tag);
    view.repoTags.push(`${familiarRepository(tag.repository)}:${tag.tag}`);
  }
  for (const ref of refs) {
    const view = viewOf(ref.manifest);
    if (!view) continue;
    view.digestRefs.push(ref);
    const text = `${familiarRepository(ref.repository)}@${ref.digest}`;
    if (!view.repoDigests.includes(text)) view.repoDigests.push(text);
  }
  for (const view of views.values()) {
    view.repoTags.sort();
    view.repoDigests.sort();
  }
  return [...views.values()];
}

/**
 * Resolves `{name}` as Docker does: a reference (`nginx`, `nginx:1`, `repo@sha256:...`) first,
 * then a full or short image ID (`sha256:<hex>`, or at least a few hex characters).
 */
export async function resolveImage(catalog: ImageCatalog, name: string): Promise<ImageView> {
  const views = await listImageViews(catalog);
  const manifest = await findByReference(catalog, name);
  if (manifest?.image) {
    const view = views.find((v) => v.id === manifest.image?.configDigest);
    if (view) return view;
  }
  if (looksLikeImageId(name)) {
    const hex = name.replace(/^sha256:/, '');
    const matches = views.filter(
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
