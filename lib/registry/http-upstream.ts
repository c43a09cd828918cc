import type { Readable } from 'node:stream';
import { type Digest, isDigest, sha256 } from '../digest.ts';
import {
  DigestMismatchError,
  InvalidReferenceError,
  RegistryNotAllowedError,
  UpstreamError,
} from '../errors.ts';
import { MAX_JSON_BYTES, MediaType } from '../media-types.ts';
import type { UpstreamObserver } from '../metrics/cache-metrics.ts';
import { type Clock, systemClock } from '../ports/clock.ts';
import type {
  BlobFetchOptions,
  ManifestHead,
  RateLimitInfo,
  TagPage,
  Upstream,
  UpstreamListing,
  UpstreamManifest,
  UpstreamRepository,
} from '../ports/upstream.ts';
import { verifyBytes } from '../verify.ts';
import {
  baseMediaType,
  isSchema1Type,
  MANIFEST_ACCEPT,
  readCapped,
  resolveManifestMediaType,
  schema1Error,
} from './accept.ts';
import type { Credentials } from './auth.ts';
import { openResumableBlob } from './blob-stream.ts';
import { type CredentialSource, staticCredentials } from './credential-source.ts';
import { type AddressRuleOverrides, RegistryClient, type Target } from './registry-client.ts';
import { readRegistryErrors, type Subject, statusError } from './registry-errors.ts';
import { type RetryPolicy, realSleep, retryPolicy } from './retry.ts';
import { DEFAULT_TIMEOUTS, discard, type RegistryResponse, type Timeouts } from './transport.ts';

export interface HttpUpstreamOptions {
  /** Allow-list: registry name (`docker.io`) -> API base URL (`https://registry-1.docker.io`). */
  registries: Map<string, URL>;
  /** A fixed map (IMAGE_CACHE_AUTH_FILE) or a source that can change (a rotated secret). */
  credentials?: ReadonlyMap<string, Credentials> | CredentialSource;
  clock?: Clock;
  retry?: Partial<RetryPolicy>;
  userAgent?: string;
  /** Longest Retry-After we wait out; a longer one fails the pull with UPSTREAM_RATE_LIMITED. */
  maxRetryAfterMs?: number;
  timeouts?: Partial<Timeouts>;
  connectionsPerOrigin?: number;
  /** For tests only: see AddressRuleOverrides. */
  addressRule?: AddressRuleOverrides;
  /** Told of every request sent and every rate-limit header seen (/metrics). */
  observer?: UpstreamObserver;
}

// distribution/reference's path component and tag grammars. Checking them here keeps
// `../` or `?` out of the URLs we build, whatever the caller passes.
const REPOSITORY =
  /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/**
 * The Upstream port over the registry HTTP API (OCI distribution spec). Manifests are buffered
 * (capped) and verified before they are returned; blobs stream through a verifying, resuming
 * reader. Auth, retries, 429 and redirects live in RegistryClient.
 */
export class HttpUpstream implements Upstream, UpstreamListing {
  readonly #registries: Map<string, URL>;
  readonly #client: RegistryClient;
  readonly #policy: RetryPolicy;
  readonly #timeouts: Timeouts;

  constructor(options: HttpUpstreamOptions) {
    this.#registries = new Map();
    for (const [name, url] of options.registries) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new RangeError(`registry ${name}: base URL must be http or https, got ${url.href}`);
      }
      this.#registries.set(name, url);
    }
    this.#policy = retryPolicy(options.retry);
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.#client = new RegistryClient({
      credentials: credentialSource(options.credentials),
      clock: options.clock ?? systemClock,
      policy: this.#policy,
      sleep: realSleep,
      userAgent: options.userAgent ?? 'image-cache/0.1.0',
      maxRetryAfterMs: options.maxRetryAfterMs ?? 60_000,
      timeouts: this.#timeouts,
      connectionsPerOrigin: options.connectionsPerOrigin ?? 8,
      ...(options.addressRule && { addressRule: options.addressRule }),
      ...(options.observer && { observer: options.observer }),
    });
  }

  async getManifest(repo: UpstreamRepository, tagOrDigest: string): Promise<UpstreamManifest> {
    const target = this.#target(repo);
    const reference = checkReference(tagOrDigest);
    const subject: Subject = { kind: 'manifest', name: target.name, reference };
    const request = {
      method: 'GET' as const,
      path: `/v2/${target.repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      maxRedirects: 0,
    };
    return this.#client.exchange(target, subject, request, async (res) => {
      const label = manifestLabel(target.name, reference);
      if (res.status !== 200)
        throw statusError(res.status, subject, await readRegistryErrors(res.body));
      const contentType = firstHeader(res.headers['content-type']);
      // Refuse before buffering: schema 1 bodies are large signed documents we cannot use.
      if (isSchema1Type(baseMediaType(contentType))) {
        await discard(res.body);
        throw schema1Error(label);
      }
      const raw = await readCapped(
        res.body,
        res.headers['content-length'],
        `manifest for ${label}`,
        MAX_JSON_BYTES,
        this.#timeouts.jsonBodyMs,
      );
      const mediaType = resolveManifestMediaType(contentType, raw, label);
      const digest = verifyManifest(
        raw,
        reference,
        firstHeader(res.headers['docker-content-digest']),
        label,
      );
      return { digest, mediaType, raw: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) };
    });
  }

  async headManifest(
    repo: UpstreamRepository,
    tagOrDigest: string,
    options: { waitOnRateLimit?: boolean } = {},
  ): Promise<ManifestHead> {
    const target = this.#target(repo);
    const reference = checkReference(tagOrDigest);
    const subject: Subject = { kind: 'manifest', name: target.name, reference };
    const label = manifestLabel(target.name, reference);
    const request = {
      method: 'HEAD' as const,
      path: `/v2/${target.repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      maxRedirects: 0,
      ...(options.waitOnRateLimit === false && { waitOnRateLimit: false }),
    };
    const head = await this.#client.exchange(target, subject, request, async (res) => {
      await discard(res.body);
      if (res.status !== 200) throw statusError(res.status, subject, []);
      const mediaType = baseMediaType(firstHeader(res.headers['content-type']));
      if (isSchema1Type(mediaType)) throw schema1Error(label);
      const digest = firstHeader(res.headers['docker-content-digest']);
      const size = Number(firstHeader(res.headers['content-length']));
      if (digest === undefined || !isDigest(digest) || !mediaType || !Number.isSafeInteger(size)) {
        return undefined;
      }
      if (isDigest(reference) && digest !== reference) {
        throw new DigestMismatchError(`manifest ${label}: the registry answered for ${digest}`);
      }
      return { digest, mediaType, size };
    });
    if (head && head.mediaType !== 'application/json' && head.mediaType !== 'text/plain') {
      return head;
    }
    // Without Docker-Content-Digest (or a usable type) HEAD tells us nothing we can trust;
    // fetching and hashing costs a pull on Docker Hub but gives the right answer.
    const manifest = await this.getManifest(repo, reference);
    return { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.raw.length };
  }

  async getBlob(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    fetchOptions: BlobFetchOptions = {},
  ): Promise<Readable> {
    const target = this.#target(repo);
    if (!isDigest(blob.digest))
      throw new InvalidReferenceError(`invalid blob digest: ${blob.digest}`);
    const subject: Subject = { kind: 'blob', name: target.name, digest: blob.digest };
    const open = (offset: number) =>
      this.#client.exchange(
        target,
        subject,
        {
          method: 'GET',
          path: `/v2/${target.repository}/blobs/${blob.digest}`,
          headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
          maxRedirects: 5,
        },
        async (res) => {
          if (res.status === 200) return { body: res.body, start: 0 };
          const start = res.status === 206 ? rangeStart(res.headers['content-range']) : undefined;
          if (start !== undefined) return { body: res.body, start };
          if (res.url.origin !== target.base.origin) {
            // A CDN refusing its own signed URL (expired, clock skew) says nothing about the
            // repository; asking the registry again yields a fresh URL.
            await discard(res.body);
            throw new UpstreamError(
              'UPSTREAM_ERROR',
              `blob ${blob.digest} of ${target.name}: the blob storage at ${res.url.host} answered ${res.status}`,
              {
                retryable:
                  res.status >= 500 ||
                  res.status === 401 ||
                  res.status === 403 ||
                  res.status === 429,
              },
            );
          }
          throw statusError(res.status, subject, await readRegistryErrors(res.body));
        },
      );
    return openResumableBlob(open, blob, {
      policy: this.#policy,
      sleep: realSleep,
      label: `blob ${blob.digest} of ${target.name}`,
      hash: fetchOptions.verify !== 'size-only',
    });
  }

  async headBlob(repo: UpstreamRepository, digest: Digest): Promise<{ size: number }> {
    return this.#blobExchange(repo, digest, 'HEAD', 5, async (res, subject, target) => {
      await discard(res.body);
      if (res.status !== 200) throw statusError(res.status, subject, []);
      const size = Number(firstHeader(res.headers['content-length']));
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new UpstreamError('UPSTREAM_ERROR', `blob ${digest} of ${target.name}: no size`);
      }
      return { size };
    });
  }

  async blobRedirect(repo: UpstreamRepository, digest: Digest): Promise<URL | undefined> {
    return this.#blobExchange(repo, digest, 'GET', 0, async (res, subject, target) => {
      // The bytes themselves (or an error): nothing to hand a client but our own answer.
      await discard(res.body);
      const location = firstHeader(res.headers.location);
      if (res.status < 300 || res.status >= 400 || !location) {
        if (res.status >= 400) throw statusError(res.status, subject, []);
        return undefined;
      }
      const url = new URL(location, res.url);
      // Only another host's signed URL: the registry's own would need our credentials. The
      // client fetches it, not the cache, so the address rules for our own requests do not apply.
      if (url.origin === target.base.origin) return undefined;
      return url;
    });
  }

  /** One request for a blob's answer alone (its headers): the digest checked before it goes. */
  #blobExchange<T>(
    repo: UpstreamRepository,
    digest: Digest,
    method: 'HEAD' | 'GET',
    maxRedirects: number,
    consume: (response: RegistryResponse, subject: Subject, target: Target) => Promise<T>,
  ): Promise<T> {
    const target = this.#target(repo);
    if (!isDigest(digest)) throw new InvalidReferenceError(`invalid blob digest: ${digest}`);
    const subject: Subject = { kind: 'blob', name: target.name, digest };
    const request = {
      method,
      path: `/v2/${target.repository}/blobs/${digest}`,
      headers: {},
      maxRedirects,
    };
    return this.#client.exchange(target, subject, request, (res) => consume(res, subject, target));
  }

  async listTags(repo: UpstreamRepository, page: { n?: number; last?: string }): Promise<TagPage> {
    const target = this.#target(repo);
    const subject: Subject = { kind: 'repository', name: target.name };
    const query = new URLSearchParams();
    if (page.n !== undefined) query.set('n', String(page.n));
    if (page.last !== undefined) query.set('last', page.last);
    const search = query.size > 0 ? `?${query}` : '';
    const request = {
      method: 'GET' as const,
      path: `/v2/${target.repository}/tags/list${search}`,
      headers: { accept: 'application/json' },
      maxRedirects: 0,
    };
    return this.#client.exchange(target, subject, request, async (res) => {
      if (res.status !== 200) {
        throw statusError(res.status, subject, await readRegistryErrors(res.body));
      }
      const raw = await readCapped(
        res.body,
        res.headers['content-length'],
        `tag list of ${target.name}`,
        MAX_JSON_BYTES,
        this.#timeouts.jsonBodyMs,
      );
      const tags = parseJsonField(raw, 'tags', `tag list of ${target.name}`);
      if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string' && TAG.test(t))) {
        throw new UpstreamError('UPSTREAM_ERROR', `tag list of ${target.name} is not a tag list`);
      }
      const next = nextLast(firstHeader(res.headers.link));
      return next === undefined ? { tags } : { tags, next };
    });
  }

  async referrers(
    repo: UpstreamRepository,
    digest: Digest,
    artifactType?: string,
  ): Promise<{ raw: Uint8Array; mediaType: string } | undefined> {
    const target = this.#target(repo);
    if (!isDigest(digest)) throw new InvalidReferenceError(`invalid digest: ${digest}`);
    const subject: Subject = { kind: 'manifest', name: target.name, reference: digest };
    const search = artifactType ? `?${new URLSearchParams({ artifactType })}` : '';
    const request = {
      method: 'GET' as const,
      path: `/v2/${target.repository}/referrers/${digest}${search}`,
      headers: { accept: MediaType.ociIndex },
      maxRedirects: 0,
    };
    return this.#client.exchange(target, subject, request, async (res) => {
      // No referrers API (404, or an old registry's 400/405): clients use the tag schema.
      if (res.status === 404 || res.status === 400 || res.status === 405) {
        await discard(res.body);
        return undefined;
      }
      if (res.status !== 200) {
        throw statusError(res.status, subject, await readRegistryErrors(res.body));
      }
      const raw = await readCapped(
        res.body,
        res.headers['content-length'],
        `referrers of ${target.name}@${digest}`,
        MAX_JSON_BYTES,
        this.#timeouts.jsonBodyMs,
      );
      const manifests = parseJsonField(raw, 'manifests', `referrers of ${target.name}@${digest}`);
      if (!Array.isArray(manifests)) {
        throw new UpstreamError('UPSTREAM_ERROR', `referrers of ${target.name} is not an index`);
      }
      const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
      return { raw: bytes, mediaType: MediaType.ociIndex };
    });
  }

  rateLimit(registry: string): RateLimitInfo | undefined {
    return this.#client.rateLimit(registry);
  }

  /** Closes pooled connections; in-flight transfers fail. */
  async close(): Promise<void> {
    await this.#client.close();
  }

  /** The allow-list check comes first so a refused registry never sees a connection. */
  #target(repo: UpstreamRepository): Target {
    const base = this.#registries.get(repo.registry);
    if (!base) throw new RegistryNotAllowedError(repo.registry);
    if (!REPOSITORY.test(repo.repository) || repo.repository.length > 255) {
      throw new InvalidReferenceError(
        `invalid repository name: ${JSON.stringify(repo.repository)}`,
      );
    }
    return {
      registry: repo.registry,
      repository: repo.repository,
      base,
      name: `${repo.registry}/${repo.repository}`,
    };
  }
}

function credentialSource(
  credentials: ReadonlyMap<string, Credentials> | CredentialSource | undefined,
): CredentialSource {
  if (credentials === undefined) return staticCredentials(new Map());
  return 'refused' in credentials ? credentials : staticCredentials(credentials);
}

function checkReference(tagOrDigest: string): string {
  if (isDigest(tagOrDigest) || TAG.test(tagOrDigest)) return tagOrDigest;
  throw new InvalidReferenceError(`invalid tag or digest: ${JSON.stringify(tagOrDigest)}`);
}

function manifestLabel(name: string, reference: string): string {
  return isDigest(reference) ? `${name}@${reference}` : `${name}:${reference}`;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * By digest, the bytes must hash to it. By tag, the registry's Docker-Content-Digest is the
 * only independent statement of what the tag points at, so it must match when it is sha256.
 */
function verifyManifest(
  raw: Uint8Array,
  reference: string,
  headerDigest: string | undefined,
  label: string,
): Digest {
  if (isDigest(reference)) return verifyBytes(raw, { digest: reference }, `manifest ${label}`);
  const digest = sha256(raw);
  if (headerDigest?.startsWith('sha256:') && headerDigest !== digest) {
    throw new DigestMismatchError(
      `manifest ${label}: Docker-Content-Digest is ${headerDigest}, the content hashes to ${digest}`,
    );
  }
  return digest;
}

/** `bytes 100-199/200` -> 100. */
function rangeStart(value: string | string[] | undefined): number | undefined {
  const match = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(firstHeader(value)?.trim() ?? '');
  return match ? Number(match[1]) : undefined;
}

/** A field of a JSON object body, or an UpstreamError naming what was read. */
function parseJsonField(raw: Buffer, field: string, what: string): unknown {
  try {
    return (JSON.parse(raw.toString('utf8')) as Record<string, unknown> | null)?.[field];
  } catch {
    throw new UpstreamError('UPSTREAM_ERROR', `${what} is not valid JSON`);
  }
}

/** `</v2/x/tags/list?n=2&last=b>; rel="next"` -> `b`: where the next page starts. */
function nextLast(link: string | undefined): string | undefined {
  const target = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link ?? '')?.[1];
  if (!target) return undefined;
  return new URL(target, 'http://registry').searchParams.get('last') ?? undefined;
}
