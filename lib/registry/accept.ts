import type { Readable } from 'node:stream';
import { ImageCacheError, UpstreamError } from '../errors.ts';
import {
  IMAGE_MANIFEST_MEDIA_TYPES,
  INDEX_MEDIA_TYPES,
  MAX_JSON_BYTES,
  MediaType,
  SCHEMA1_MEDIA_TYPES,
} from '../media-types.ts';

/**
 * Every manifest type the cache stores. Schema 1 is deliberately absent: a registry that still
 * holds a schema 2 version of the image then converts or serves that one instead.
 */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
].join(', ');

const KNOWN_MANIFEST_TYPES = new Set([...INDEX_MEDIA_TYPES, ...IMAGE_MANIFEST_MEDIA_TYPES]);

/** `application/json; charset=utf-8` -> `application/json`. */
export function baseMediaType(contentType: string | undefined): string | undefined {
  const base = contentType?.split(';')[0]?.trim().toLowerCase();
  return base ? base : undefined;
}

export function schema1Error(name: string): ImageCacheError {
  return new ImageCacheError(
    'UNSUPPORTED_MEDIA_TYPE',
    `${name} uses manifest schema 1, which is no longer supported; push it again with a current client`,
  );
}

export function isSchema1Type(mediaType: string | undefined): boolean {
  return mediaType !== undefined && SCHEMA1_MEDIA_TYPES.includes(mediaType);
}

/**
 * The media type of fetched manifest bytes. Content-Type is authoritative when it names a type
 * we know; registries that answer `application/json` or `text/plain` are common, so then the
 * body's own `mediaType`, then its shape, decide. Schema 1 is refused whichever way it shows.
 */
export function resolveManifestMediaType(
  contentType: string | undefined,
  raw: Uint8Array,
  name: string,
): string {
  const declared = baseMediaType(contentType);
  if (isSchema1Type(declared)) throw schema1Error(name);
  let body: { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown; layers?: unknown };
  try {
    body = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch {
    throw new UpstreamError('UPSTREAM_ERROR', `manifest for ${name} is not valid JSON`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new UpstreamError('UPSTREAM_ERROR', `manifest for ${name} is not a JSON object`);
  }
  if (body.schemaVersion === 1) throw schema1Error(name);
  if (declared && KNOWN_MANIFEST_TYPES.has(declared)) return declared;
  if (typeof body.mediaType === 'string' && KNOWN_MANIFEST_TYPES.has(body.mediaType)) {
    return body.mediaType;
  }
  // OCI allows mediaType to be omitted; the shape tells an index from an image manifest.
  if (Array.isArray(body.manifests)) return MediaType.ociIndex;
  if (Array.isArray(body.layers)) return MediaType.ociManifest;
  throw new ImageCacheError(
    'UNSUPPORTED_MEDIA_TYPE',
    `manifest for ${name} has unsupported media type ${declared ?? 'unknown'}`,
  );
}

function payloadTooLarge(name: string, limit: number): ImageCacheError {
  return new ImageCacheError(
    'PAYLOAD_TOO_LARGE',
    `${name} is larger than ${limit} bytes, the limit for manifests and configs`,
  );
}

/**
 * How long a manifest, config or token body may take in all. The transport's body timeout only
 * bounds the silence between chunks, so a registry dripping a byte a second would hold a 4 MiB
 * manifest's pull for weeks.
 */
export const JSON_BODY_TIMEOUT_MS = 60_000;

/**
 * Buffers a JSON body, refusing anything over `limit` before reading it (Content-Length) or as
 * soon as it grows past it, so a hostile registry cannot make the cache buffer gigabytes, nor
 * hold it for longer than `timeoutMs`.
 */
export async function readCapped(
  body: Readable,
  contentLength: string | string[] | undefined,
  name: string,
  limit = MAX_JSON_BYTES,
  timeoutMs = JSON_BODY_TIMEOUT_MS,
): Promise<Buffer> {
  const declared = Number(Array.isArray(contentLength) ? contentLength[0] : contentLength);
  if (Number.isFinite(declared) && declared > limit) {
    body.destroy();
    throw payloadTooLarge(name, limit);
  }
  const timer = setTimeout(() => {
    body.destroy(
      new UpstreamError(
        'UPSTREAM_TIMEOUT',
        `${name} did not arrive within ${timeoutMs / 1000}s; the registry sends too slowly`,
        { retryable: true },
      ),
    );
  }, timeoutMs);
  timer.unref();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const buffer = chunk as Buffer;
      size += buffer.length;
      if (size > limit) {
        body.destroy();
        throw payloadTooLarge(name, limit);
      }
      chunks.push(buffer);
    }
  } finally {
    clearTimeout(timer);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}
