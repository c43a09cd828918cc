import type { HttpResponse } from '../engine/http.ts';
import type { ServedManifest } from '../manifest-source.ts';
import type { Reference } from '../model.ts';
import { repositoryName } from '../reference.ts';
import { OciError } from './oci-errors.ts';
import type { DoorRequest, MirrorContext } from './registry-door.ts';

/**
 * `GET|HEAD /v2/<name>/manifests/<tag|digest>`: the exact bytes the upstream serves (an index
 * stays an index; the client picks its platform), with their own Content-Type,
 * Docker-Content-Digest and Content-Length. Tag freshness, HEAD revalidation and
 * stale-if-error are the Engine pull's own (ManifestSource), so a tag served within its TTL
 * costs Docker Hub nothing, and a HEAD never costs a pull.
 */
export async function serveManifest(
  door: DoorRequest,
  context: MirrorContext,
): Promise<HttpResponse> {
  const { ref } = door.target;
  const get = door.request.method === 'GET';
  const served = door.mayPull
    ? await context.pulls.manifests.served(ref, { bytes: get })
    : await cachedOnly(ref, context);
  if (!get) {
    if (ref.tag) context.fills.tagResolved(ref, served.digest);
  } else if (served.raw) {
    context.metrics.lookup('manifest', served.stored !== undefined, ref.registry, 'registry');
    if (served.stored) {
      await context.catalog.touchManifest(served.digest, context.clock.now(), 'pull');
    }
    const { digest, raw, mediaType } = served;
    context.fills.manifestServed(
      ref,
      { digest, raw, mediaType },
      { stored: served.stored !== undefined },
    );
  }
  return {
    status: 200,
    headers: {
      'Content-Type': served.mediaType,
      'Docker-Content-Digest': served.digest,
      'Content-Length': String(served.size),
      ETag: `"${served.digest}"`,
    },
    ...(get && served.raw && { body: served.raw }),
  };
}

/** A `read` token sees what the catalog holds, and nothing is asked of the upstream for it. */
async function cachedOnly(ref: Reference, context: MirrorContext): Promise<ServedManifest> {
  const { catalog } = context;
  const digest =
    ref.digest ?? (await catalog.getTag(repositoryName(ref), ref.tag ?? 'latest'))?.source;
  const record = digest ? await catalog.getManifest(digest) : undefined;
  if (!record) {
    throw new OciError(
      'DENIED',
      403,
      `${repositoryName(ref)}:${ref.tag ?? ref.digest} is not cached, and fetching it from the upstream needs a token of scope pull`,
    );
  }
  return {
    digest: record.digest,
    mediaType: record.mediaType,
    size: record.raw.length,
    raw: record.raw,
    stored: record,
  };
}
