import type { Digest } from '../digest.ts';
import type { HttpResponse } from '../engine/http.ts';
import { type ByteRange, presignedBlobUrlsOf } from '../ports/blob-store.ts';
import { upstreamListingOf } from '../ports/upstream.ts';
import { OciError } from './oci-errors.ts';
import type { DoorRequest, MirrorContext } from './registry-door.ts';

/**
 * `GET|HEAD /v2/<name>/blobs/<digest>`. A stored blob is read from the store (Range gives 206),
 * or, where the store can sign URLs and the setting allows, answered with a 307 to storage so
 * no byte passes through the server (Go clients follow it without their Authorization). A
 * blob not stored yet is fetched once however many clients want it; the first client gets the
 * bytes as they arrive (BlobFetcher.open), the blob failing verification cuts its answer short.
 */
export async function serveBlob(door: DoorRequest, context: MirrorContext): Promise<HttpResponse> {
  const digest = door.target.ref.digest!;
  const repo = { registry: door.target.ref.registry, repository: door.target.ref.repository };
  const { request } = door;
  const head = request.method === 'HEAD';
  if (!head) context.fills.blobRequested(digest);
  const stored = await context.blobs.stat(digest);
  if (!head) context.metrics.lookup('blob', stored !== undefined, repo.registry, 'registry');
  let size = stored?.size;
  if (size === undefined) {
    if (!door.mayPull) {
      throw new OciError(
        'DENIED',
        403,
        `blob ${digest} is not cached, and fetching it from the upstream needs a token of scope pull`,
      );
    }
    size = context.fills.sizeOf(digest) ?? (await upstreamSize(context, repo, digest));
  }
  const range = parseRange(request.headers.range, size);
  if (range === 'unsatisfiable') {
    return {
      status: 416,
      headers: { 'Content-Range': `bytes */${size}`, 'Content-Type': 'application/json' },
      body: `${JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: `range not satisfiable: ${size} bytes` }] })}\n`,
    };
  }
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Docker-Content-Digest': digest,
    'Accept-Ranges': 'bytes',
    ETag: `"${digest}"`,
  };
  if (head) return { status: 200, headers: { ...headers, 'Content-Length': String(size) } };
  if (stored) {
    const redirect = await redirectToStorage(context, digest);
    if (redirect) {
      // Storage sends the bytes, but they are the cache's: the upstream never sees them.
      context.metrics.bytesServed('registry', size);
      return redirect;
    }
  } else if (!fitsTheFrontDoor(request, range ? range.end! - range.start + 1 : size)) {
    return await elsewhere(context, repo, digest);
  }
  const opened = await context.pulls.blobs.open(
    repo,
    { digest, size },
    { ...(range && { range }), ...(request.signal && { signal: request.signal }) },
  );
  const length = range ? (range.end ?? size - 1) - range.start + 1 : size;
  if (opened.cached) context.metrics.bytesServed('registry', length);
  if (!range) {
    return {
      status: 200,
      headers: { ...headers, 'Content-Length': String(size) },
      body: opened.body,
    };
  }
  const end = range.end ?? size - 1;
  return {
    status: 206,
    headers: {
      ...headers,
      'Content-Range': `bytes ${range.start}-${end}/${size}`,
      'Content-Length': String(end - range.start + 1),
    },
    body: opened.body,
  };
}

/** A short-lived storage URL for a blob that stays live while it is fetched (it was touched). */
async function redirectToStorage(
  context: MirrorContext,
  digest: Digest,
): Promise<HttpResponse | undefined> {
  const presigned = context.door.redirectBlobs ? presignedBlobUrlsOf(context.blobs) : undefined;
  if (!presigned) return undefined;
  // Touched, so a collection keeps it for at least its grace, longer than the URL lives.
  if ((await context.catalog.touchBlob(digest, context.clock.now())) !== 'live') return undefined;
  const { url } = await presigned.presignedGetUrl(digest, context.door.redirectSeconds);
  return { status: 307, headers: { Location: url, 'Cache-Control': 'no-store' } };
}

/**
 * Streaming a blob the cache does not hold yet needs the front door to carry it: always on the
 * Node server, on a Lambda front only when the blob fits its response and its time, at a rate
 * a slow upstream still makes.
 */
const SLOWEST_STREAM_BYTES_PER_SECOND = 5 * 1024 * 1024;

function fitsTheFrontDoor(
  request: { deadline?: number; responseLimit?: number },
  bytes: number,
): boolean {
  if (request.responseLimit !== undefined && bytes > request.responseLimit) return false;
  if (request.deadline === undefined) return true;
  return (bytes / SLOWEST_STREAM_BYTES_PER_SECOND) * 1000 < request.deadline - Date.now();
}

/**
 * A blob too large for this front door to stream, not cached yet: the client is sent to the
 * upstream's own CDN when the registry has one (Docker Hub's signed URLs need no credentials,
 * and blob GETs cost no pull), else asked to come back (429 with Retry-After, which containerd
 * retries and dockerd answers by pulling from the upstream itself). Meanwhile the image's fill
 * job, started with its manifest, stores the blob; the next client gets it from the cache.
 */
async function elsewhere(
  context: MirrorContext,
  repo: { registry: string; repository: string },
  digest: Digest,
): Promise<HttpResponse> {
  const cdn = await upstreamListingOf(context.upstream)?.blobRedirect(repo, digest);
  if (cdn) return { status: 307, headers: { Location: cdn.href, 'Cache-Control': 'no-store' } };
  throw Object.assign(
    new OciError(
      'TOOMANYREQUESTS',
      429,
      `blob ${digest} is not cached yet and too large to stream through this endpoint; its image's fill (started by the manifest request) stores it: try again shortly`,
    ),
    { retryAfterSeconds: 10 },
  );
}

async function upstreamSize(
  context: MirrorContext,
  repo: { registry: string; repository: string },
  digest: Digest,
): Promise<number> {
  const listing = upstreamListingOf(context.upstream);
  if (!listing) throw new OciError('BLOB_UNKNOWN', 404, `blob ${digest} is not cached`);
  return (await listing.headBlob(repo, digest)).size;
}

/**
 * `bytes=a-b`, `bytes=a-` and `bytes=-n` (the last n); several ranges or another unit are
 * answered with the whole blob, as HTTP allows. Undefined: no range.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    const last = Number(match[2]);
    if (last === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - last), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}
