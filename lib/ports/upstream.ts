import type { Readable } from 'node:stream';
import type { Digest } from '../digest.ts';

/** A repository on an upstream registry: `{registry: 'docker.io', repository: 'library/nginx'}`. */
export interface UpstreamRepository {
  registry: string;
  repository: string;
}

export interface UpstreamManifest {
  digest: Digest;
  mediaType: string;
  /** Exact bytes, verified against the digest (the requested one, or Docker-Content-Digest). */
  raw: Uint8Array;
}

export interface ManifestHead {
  digest: Digest;
  mediaType: string;
  size: number;
}

/** The registry's `RateLimit-*` headers as last seen (Docker Hub: `100;w=21600`). */
export interface RateLimitInfo {
  limit?: number;
  remaining?: number;
  windowSeconds?: number;
  /** Docker-RateLimit-Source, the address or account the limit applies to. */
  source?: string;
  /** When the quota is whole again, from `RateLimit-Reset` (ms since the epoch), if sent. */
  resetAt?: number;
  observedAt: number;
}

export interface BlobFetchOptions {
  /**
   * `'size-only'` leaves the sha256 to a consumer that computes it anyway before it commits
   * (BlobStore.write with the expected digest), so each byte is hashed once. Sizes are still
   * enforced and resumes still happen. Default `'sha256'`.
   */
  verify?: 'sha256' | 'size-only';
}

/**
 * A registry client. Implementations refuse registries that are not allow-listed before any
 * connection, negotiate manifest media types (schema1 refused), verify every byte, retry
 * transient faults and honour 429.
 */
export interface Upstream {
  getManifest(repo: UpstreamRepository, tagOrDigest: string): Promise<UpstreamManifest>;
  /**
   * Resolves a tag without fetching it; does not count against Docker Hub's pull limit.
   * `waitOnRateLimit: false` (background checks) fails a 429 at once with
   * UpstreamRateLimitedError instead of waiting out a short Retry-After.
   */
  headManifest(
    repo: UpstreamRepository,
    tagOrDigest: string,
    options?: { waitOnRateLimit?: boolean },
  ): Promise<ManifestHead>;
  /**
   * Streams a blob. The stream errors with DigestMismatchError at its end when size or sha256
   * differ; interrupted transfers resume with Range where the registry allows it.
   */
  getBlob(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options?: BlobFetchOptions,
  ): Promise<Readable>;
  rateLimit(registry: string): RateLimitInfo | undefined;
}

/** One page of a repository's tags; `next` is the `last` to ask for the following page. */
export interface TagPage {
  tags: string[];
  next?: string;
}

/**
 * What the registry door passes through from an upstream besides manifests and blobs. An
 * optional capability: an Upstream without it answers those requests from the catalog alone.
 */
export interface UpstreamListing {
  /** A blob's size, without fetching it (HEAD; free on Docker Hub). */
  headBlob(repo: UpstreamRepository, digest: Digest): Promise<{ size: number }>;
  /**
   * Where the registry sends a client for the blob's bytes when that is another host (Docker
   * Hub's CDN): a short-lived signed URL that needs no credentials. Undefined when the registry
   * serves the bytes itself.
   */
  blobRedirect(repo: UpstreamRepository, digest: Digest): Promise<URL | undefined>;
  listTags(repo: UpstreamRepository, page: { n?: number; last?: string }): Promise<TagPage>;
  /**
   * The OCI referrers index of a manifest (signatures, SBOMs), verified JSON; undefined when the
   * registry has no referrers API (clients then fall back to the `sha256-<hex>` tag schema).
   */
  referrers(
    repo: UpstreamRepository,
    digest: Digest,
    artifactType?: string,
  ): Promise<{ raw: Uint8Array; mediaType: string } | undefined>;
}

export function upstreamListingOf(upstream: object): UpstreamListing | undefined {
  const candidate = upstream as Partial<UpstreamListing>;
  return typeof candidate.headBlob === 'function' &&
    typeof candidate.blobRedirect === 'function' &&
    typeof candidate.listTags === 'function' &&
    typeof candidate.referrers === 'function'
    ? (upstream as UpstreamListing)
    : undefined;
}
