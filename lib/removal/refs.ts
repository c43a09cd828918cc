/**
 * The names that lead to an image (tags and `repo@digest` references), as moby's reference
 * store sees them, plus resolving a user's `{name}` to the exact manifest and name it means.
 * Removal, tagging and pins all start here.
 */
import { type Digest, digestHex } from '../digest.ts';
import { type ImageView, resolveImage } from '../images.ts';
import type { RepositoryName } from '../model.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import {
  familiarRepository,
  looksLikeImageId,
  parseReference,
  repositoryName,
  withDefaultTag,
} from '../reference.ts';

export type ImageRef =
  | { kind: 'tag'; repository: RepositoryName; tag: string; manifest: Digest; source: Digest }
  | { kind: 'digest'; repository: RepositoryName; digest: Digest; manifest: Digest };

/** `nginx:latest`, `nginx@sha256:...`: what Docker prints in `Untagged:`. */
export function familiarRef(ref: ImageRef): string {
  const name = familiarRepository(ref.repository);
  return ref.kind === 'tag' ? `${name}:${ref.tag}` : `${name}@${ref.digest}`;
}

/** `docker.io/library/nginx:latest`: the normalised name pins and prune use. */
export function fullRef(ref: ImageRef): string {
  return ref.kind === 'tag' ? `${ref.repository}:${ref.tag}` : `${ref.repository}@${ref.digest}`;
}

export function sameRef(a: ImageRef, b: ImageRef): boolean {
  return fullRef(a) === fullRef(b);
}

/** Every name of an image, sorted as moby's reference store lists them (lexically). */
export function refsOf(view: ImageView): ImageRef[] {
  // Each name copied field by field: the view's records carry more than a reference holds.
  const refs: ImageRef[] = [
    ...view.tags.map(({ repository, tag, manifest, source }): ImageRef => {
      return { kind: 'tag', repository, tag, manifest, source };
    }),
    ...view.digestRefs.map(({ repository, digest, manifest }): ImageRef => {
      return { kind: 'digest', repository, digest, manifest };
    }),
  ];
  return refs.sort((a, b) => compare(familiarRef(a), familiarRef(b)));
}

/**
 * moby's `isSingleReference`: at most one tag, and every reference (tag or digest) in the same
 * repository. Deleting by ID untags such an image without force; anything else is "referenced in
 * multiple repositories".
 */
export function isSingleReference(refs: readonly ImageRef[]): boolean {
  if (refs.length <= 1) return refs.length === 1;
  const tags = refs.filter((r) => r.kind === 'tag');
  if (tags.length > 1) return false;
  return new Set(refs.map((r) => r.repository)).size === 1;
}

/** What `{name}` resolved to: the image, the manifest meant, and the reference if one was named. */
export interface NamedImage {
  view: ImageView;
  manifest: Digest;
  /** The tag or digest reference `{name}` spells, when it exists (not for IDs). */
  ref?: ImageRef;
  /** Set when `{name}` was an image ID (or a prefix of one): Docker's `isImageIDPrefix`. */
  byId: boolean;
}

/**
 * resolveImage, and then which of the image's names (or its ID) `{name}` spelled. A reference
 * wins over an ID prefix, as in resolveImage; a `repo@digest` naming a stored manifest without a
 * recorded reference resolves with `ref` unset.
 */
export async function resolveNamed(catalog: ImageCatalog, name: string): Promise<NamedImage> {
  const view = await resolveImage(catalog, name);
  const refs = refsOf(view);
  const parsed = tryParse(name);
  if (parsed) {
    const ref = refs.find((r) =>
      parsed.digest
        ? r.kind === 'digest' && r.repository === parsed.repository && r.digest === parsed.digest
        : r.kind === 'tag' && r.repository === parsed.repository && r.tag === parsed.tag,
    );
    if (ref) return { view, manifest: ref.manifest, ref, byId: false };
    if (parsed.digest && view.manifests.some((m) => m.digest === parsed.digest)) {
      return { view, manifest: parsed.digest, byId: false };
    }
  }
  const byId = isIdPrefix(view, name);
  const hex = name.replace(/^sha256:/, '');
  // An ID names the image; a manifest-digest prefix names that manifest.
  const manifest =
    view.manifests.find((m) => byId && digestHex(m.digest).startsWith(hex)) ?? view.manifests[0]!;
  return { view, manifest: manifest.digest, byId };
}

/** Whether `name` is (a prefix of) the image ID or one of its manifest digests. */
export function isIdPrefix(view: ImageView, name: string): boolean {
  if (!looksLikeImageId(name)) return false;
  const hex = name.replace(/^sha256:/, '');
  return (
    digestHex(view.id).startsWith(hex) ||
    view.manifests.some((m) => digestHex(m.digest).startsWith(hex))
  );
}

function tryParse(
  name: string,
): { repository: RepositoryName; tag?: string; digest?: Digest } | undefined {
  try {
    const ref = withDefaultTag(parseReference(name));
    return { repository: repositoryName(ref), tag: ref.tag, digest: ref.digest };
  } catch {
    return undefined;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
