import type { HttpResponse } from '../engine/http.ts';
import { isUpstreamOutage } from '../manifest-source.ts';
import { MediaType } from '../media-types.ts';
import { type TagPage, upstreamListingOf } from '../ports/upstream.ts';
import { repositoryName } from '../reference.ts';
import type { DoorRequest, MirrorContext } from './registry-door.ts';

/**
 * `GET /v2/<name>/tags/list` (with `n` and `last`): the upstream's list, passed through; when
 * the upstream is unreachable, or the token may only read, the tags the cache holds.
 */
export async function serveTags(door: DoorRequest, context: MirrorContext): Promise<HttpResponse> {
  const { ref } = door.target;
  const query = door.request.query;
  const n = query.get('n') === null ? undefined : Math.max(0, Number(query.get('n')) || 0);
  const last = query.get('last') ?? undefined;
  const listing = upstreamListingOf(context.upstream);
  let page: TagPage | undefined;
  if (door.mayPull && listing) {
    try {
      page = await listing.listTags(ref, { ...(n !== undefined && { n }), ...(last && { last }) });
    } catch (error) {
      if (!isUpstreamOutage(error)) throw error;
    }
  }
  page ??= await cachedTags(context, repositoryName(ref), n, last);
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (page.next !== undefined) {
    const next = new URLSearchParams({ ...(n !== undefined && { n: String(n) }), last: page.next });
    headers.Link = `</v2/${door.name}/tags/list?${next}>; rel="next"`;
  }
  return {
    status: 200,
    headers,
    body: `${JSON.stringify({ name: door.name, tags: page.tags })}\n`,
  };
}

async function cachedTags(
  context: MirrorContext,
  repository: string,
  n: number | undefined,
  last: string | undefined,
): Promise<TagPage> {
  const all = (await context.catalog.listRepositoryTags(repository))
    .map((tag) => tag.tag)
    .filter((tag) => last === undefined || tag > last)
    .sort();
  if (n === undefined || all.length <= n) return { tags: all };
  const tags = all.slice(0, n);
  return { tags, next: tags.at(-1)! };
}

/**
 * `GET /v2/<name>/referrers/<digest>`: the upstream's referrers index (cosign signatures, SBOMs,
 * attestations), passed through, so they survive the mirror. Where the upstream has no
 * referrers API, or cannot be asked, an empty index: clients then use the tag schema
 * (`sha256-<hex>.sig`), which the manifest path serves.
 */
export async function serveReferrers(
  door: DoorRequest,
  context: MirrorContext,
): Promise<HttpResponse> {
  const { ref } = door.target;
  const artifactType = door.request.query.get('artifactType') ?? undefined;
  const listing = upstreamListingOf(context.upstream);
  let index: { raw: Uint8Array; mediaType: string } | undefined;
  if (door.mayPull && listing) {
    try {
      index = await listing.referrers(ref, ref.digest!, artifactType);
    } catch (error) {
      if (!isUpstreamOutage(error)) throw error;
    }
  }
  const body =
    index?.raw ??
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }));
  return {
    status: 200,
    headers: {
      'Content-Type': MediaType.ociIndex,
      'Content-Length': String(body.length),
    },
    body,
  };
}
