/**
 * `POST /images/{name}/tag?repo=&tag=`: another name for a stored image. Only a tag record is
 * written; the catalog checks in the same transaction that the manifest and all its blobs are
 * still there (and touches them), so a tag never points at something the collector is taking.
 *
 * Any repository on any registry may be the target, allow-listed or not: a tag is a local name,
 * exactly as `docker tag x localhost:5000/y` needs no registry. The allow-list guards what the
 * cache contacts, and nothing here contacts anything.
 */
import type { Digest } from '../digest.ts';
import { InvalidArgumentError } from '../errors.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import { familiarRepository, parseReference, parseTag, repositoryName } from '../reference.ts';
import { resolveNamed } from './refs.ts';

export interface TagResult {
  repository: string;
  tag: string;
  manifest: Digest;
}

export async function tagImage(
  catalog: ImageCatalog,
  name: string,
  target: { repo?: string; tag?: string },
  now: number,
): Promise<TagResult> {
  // moby's RepoTagReference, with its messages.
  if (!target.repo) throw new InvalidArgumentError('repository name is required (repo)');
  const ref = parseReference(target.repo);
  if (ref.digest) throw new InvalidArgumentError('cannot import digest reference');
  const tag = target.tag ? parseTag(target.tag) : (ref.tag ?? 'latest');
  const repository = repositoryName(ref);
  if (familiarRepository(repository) === 'sha256') {
    throw new InvalidArgumentError(
      'refusing to create an ambiguous tag using digest algorithm as name',
    );
  }

  const named = await resolveNamed(catalog, name);
  // The new name inherits what the source name resolved from (an index and its platform), so a
  // later pull of another platform and RepoDigests behave as for the original name.
  let source: Digest = named.manifest;
  let platform: string | undefined;
  if (named.ref?.kind === 'tag') {
    const record = await catalog.getTag(named.ref.repository, named.ref.tag);
    if (record?.manifest === named.manifest) {
      source = record.source;
      platform = record.platform;
    }
  } else if (named.ref?.kind === 'digest') {
    source = named.ref.digest;
  }
  await catalog.commitImage({
    manifests: [],
    blobs: [],
    tag: {
      repository,
      tag,
      manifest: named.manifest,
      source,
      ...(platform !== undefined && { platform }),
    },
    now,
  });
  return { repository, tag, manifest: named.manifest };
}
