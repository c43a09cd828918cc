import type { Digest } from './digest.ts';
import { UpstreamError } from './errors.ts';
import { parseManifest } from './manifest.ts';
import type { CacheMetrics } from './metrics/cache-metrics.ts';
import type { Reference } from './model.ts';
import type { Clock } from './ports/clock.ts';
import type { ImageCatalog, ManifestRecord, TagRecord } from './ports/image-catalog.ts';
import type { ManifestHead, Upstream, UpstreamRepository } from './ports/upstream.ts';
import { repositoryName } from './reference.ts';
import { SingleFlight } from './single-flight.ts';

/**
 * Where manifests come from, for the Engine pull and the registry door alike: the catalog, a
 * short memory of what was just fetched, or the upstream (one request per manifest however many
 * ask at once). It also decides where a tag points now: a tag checked less than the TTL ago is
 * taken as stored, an older one is revalidated with a manifest HEAD (free on Docker Hub), and an
 * upstream that is down or rate limited leaves the cached answer standing (stale-if-error).
 */

export interface ManifestSourceDeps {
  catalog: ImageCatalog;
  upstream: Upstream;
  clock: Clock;
  /** A cached tag younger than this is served without asking the upstream. */
  tagTtlMs: number;
  /** Hears of manifest fetches joined. */
  metrics?: Pick<CacheMetrics, 'joined'>;
}

/** Where a tag points, as far as the caller needs to know. */
export type TagState =
  /** Cached, and fresh, revalidated or kept because the upstream is unreachable. */
  | { kind: 'cached'; cached: TagRecord }
  /** Cached, but the upstream's HEAD names another manifest. */
  | { kind: 'moved'; head: ManifestHead }
  /** Not cached: fetched by tag (when the bytes were asked for). */
  | { kind: 'fetched'; record: ManifestRecord }
  /** Not cached: only HEADed. */
  | { kind: 'head'; head: ManifestHead };

/** A manifest as a registry client gets it; `raw` is absent for an answer to a HEAD alone. */
export interface ServedManifest {
  digest: Digest;
  mediaType: string;
  size: number;
  raw?: Uint8Array;
  /** The catalog's record, when the manifest is stored. */
  stored?: ManifestRecord;
}

/**
 * How long a fetched manifest is remembered without being stored: long enough for the pull
 * that follows a registry client's manifest GET (and for the client's next request) not to
 * fetch it again, which Docker Hub would count as another pull.
 */
const RECENT_MS = 60_000;
const RECENT_ENTRIES = 512;

export class ManifestSource {
  readonly #deps: ManifestSourceDeps;
  readonly #flights: SingleFlight<ManifestRecord>;
  readonly #recent = new Map<string, { record: ManifestRecord; until: number }>();
  /** Tag -> the digest a recent HEAD named, for the pull that follows a registry client. */
  readonly #pointers = new Map<string, { digest: Digest; until: number }>();

  constructor(deps: ManifestSourceDeps) {
    this.#deps = deps;
    this.#flights = new SingleFlight(() => deps.metrics?.joined('manifest'));
  }

  /** A tag checked against the upstream less than the TTL ago is served without asking again. */
  isFresh(cached: TagRecord): boolean {
    return this.#deps.clock.now() - cached.checkedAt < this.#deps.tagTtlMs;
  }

  /**
   * Where `ref`'s tag points. `fetch: false` never GETs a manifest (a HEAD from a registry
   * client); `onStale` hears why a cached answer stands although the upstream could not confirm
   * it.
   */
  async tagState(
    ref: Reference,
    options: { fetch: boolean; onStale?: (error: UpstreamError) => void },
  ): Promise<TagState> {
    const { catalog, upstream, clock } = this.#deps;
    const repo = repoOf(ref);
    const tag = ref.tag ?? 'latest';
    const cached = await catalog.getTag(repositoryName(ref), tag);
    if (!cached) {
      const recent = this.#remembered(repo, tag);
      if (recent) return { kind: 'fetched', record: recent };
      // A HEAD a moment ago said where the tag points: the manifest by digest is as good.
      const pointed = this.#pointed(repo, tag);
      if (pointed && options.fetch)
        return { kind: 'fetched', record: await this.record(repo, pointed) };
      if (!options.fetch) {
        const head = await upstream.headManifest(repo, tag);
        this.#point(repo, tag, head.digest);
        return { kind: 'head', head };
      }
      return { kind: 'fetched', record: await this.fetch(repo, tag) };
    }
    if (this.isFresh(cached)) return { kind: 'cached', cached };
    try {
      const head = await upstream.headManifest(repo, tag);
      if (head.digest !== cached.source) return { kind: 'moved', head };
      await catalog.markTagChecked(repositoryName(ref), tag, clock.now());
    } catch (error) {
      if (!isUpstreamOutage(error)) throw error;
      options.onStale?.(error);
    }
    return { kind: 'cached', cached };
  }

  /** A manifest by digest: stored, just fetched, or fetched now. */
  async record(repo: UpstreamRepository, digest: Digest): Promise<ManifestRecord> {
    const stored = await this.#deps.catalog.getManifest(digest);
    if (stored) return stored;
    return this.#remembered(repo, digest) ?? this.fetch(repo, digest);
  }

  /** Fetches (once for all who ask at the same time) and remembers for a minute. */
  fetch(repo: UpstreamRepository, tagOrDigest: string): Promise<ManifestRecord> {
    const key = recentKey(repo, tagOrDigest);
    return this.#flights.run(key, async () => {
      const fetched = await this.#deps.upstream.getManifest(repo, tagOrDigest);
      const record = this.#toRecord(fetched);
      // What a tag names may change: it is remembered no longer than a cached tag is trusted.
      if (key !== recentKey(repo, record.digest)) this.#remember(key, record, this.#deps.tagTtlMs);
      this.#remember(recentKey(repo, record.digest), record);
      return record;
    });
  }

  /**
   * What a registry client asking for `ref` gets: the manifest the reference names now, an
   * index kept as the index. `bytes: false` (a HEAD) answers from the catalog or the upstream's
   * own HEAD and never GETs a manifest, so it costs no Docker Hub pull.
   */
  async served(ref: Reference, options: { bytes: boolean }): Promise<ServedManifest> {
    const repo = repoOf(ref);
    if (ref.digest) {
      const stored = await this.#deps.catalog.getManifest(ref.digest);
      if (stored) return servedOf(stored, true);
      const recent = this.#remembered(repo, ref.digest);
      if (recent) return servedOf(recent, false);
      if (!options.bytes) return await this.#deps.upstream.headManifest(repo, ref.digest);
      return servedOf(await this.fetch(repo, ref.digest), false);
    }
    const state = await this.tagState(ref, { fetch: options.bytes });
    switch (state.kind) {
      case 'cached':
        return servedOf(await this.record(repo, state.cached.source), true);
      case 'moved':
        if (!options.bytes) return state.head;
        return servedOf(await this.record(repo, state.head.digest), false);
      case 'fetched':
        return servedOf(state.record, false);
      case 'head':
        return state.head;
    }
  }

  #toRecord(m: { digest: Digest; mediaType: string; raw: Uint8Array }): ManifestRecord {
    const parsed = parseManifest(m.raw, m.mediaType);
    const now = this.#deps.clock.now();
    return {
      digest: m.digest,
      mediaType: parsed.mediaType,
      raw: m.raw,
      blobs:
        parsed.kind === 'image'
          ? [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]
          : [],
      children: parsed.kind === 'index' ? parsed.manifests.map((c) => c.digest) : [],
      createdAt: now,
      lastUsedAt: now,
    };
  }

  #remember(key: string, record: ManifestRecord, forMs = RECENT_MS): void {
    this.#recent.delete(key);
    this.#recent.set(key, {
      record,
      until: this.#deps.clock.now() + Math.min(forMs, RECENT_MS),
    });
    // Map keeps insertion order: the first entries are the oldest.
    while (this.#recent.size > RECENT_ENTRIES) {
      this.#recent.delete(this.#recent.keys().next().value!);
    }
  }

  #point(repo: UpstreamRepository, tag: string, digest: Digest): void {
    const key = recentKey(repo, tag);
    this.#pointers.delete(key);
    this.#pointers.set(key, {
      digest,
      until: this.#deps.clock.now() + Math.min(this.#deps.tagTtlMs, RECENT_MS),
    });
    while (this.#pointers.size > RECENT_ENTRIES) {
      this.#pointers.delete(this.#pointers.keys().next().value!);
    }
  }

  #pointed(repo: UpstreamRepository, tag: string): Digest | undefined {
    const entry = this.#pointers.get(recentKey(repo, tag));
    return entry && entry.until > this.#deps.clock.now() ? entry.digest : undefined;
  }

  #remembered(repo: UpstreamRepository, tagOrDigest: string): ManifestRecord | undefined {
    const key = recentKey(repo, tagOrDigest);
    const entry = this.#recent.get(key);
    if (!entry) return undefined;
    if (entry.until <= this.#deps.clock.now()) {
      this.#recent.delete(key);
      return undefined;
    }
    return entry.record;
  }
}

function repoOf(ref: Reference): UpstreamRepository {
  return { registry: ref.registry, repository: ref.repository };
}

function recentKey(repo: UpstreamRepository, tagOrDigest: string): string {
  return `${repo.registry}/${repo.repository}:${tagOrDigest}`;
}

function servedOf(record: ManifestRecord, stored: boolean): ServedManifest {
  return {
    digest: record.digest,
    mediaType: record.mediaType,
    size: record.raw.length,
    raw: record.raw,
    ...(stored && { stored: record }),
  };
}

export function isUpstreamOutage(error: unknown): error is UpstreamError {
  return (
    error instanceof UpstreamError &&
    (error.code === 'UPSTREAM_ERROR' ||
      error.code === 'UPSTREAM_TIMEOUT' ||
      error.code === 'UPSTREAM_RATE_LIMITED')
  );
}
