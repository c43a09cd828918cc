import { BlobFetcher, type BlobProgress } from './blob-fetcher.ts';
import { type Digest, shortId } from './digest.ts';
import { ImageCacheError, NotFoundError } from './errors.ts';
import { importImage } from './import/importer.ts';
import { registrySource } from './import/registry-source.ts';
import {
  DEFAULT_PLATFORM,
  formatPlatform,
  type ImageManifest,
  normalizePlatform,
  type ParsedManifest,
  parseManifest,
  selectPlatform,
} from './manifest.ts';
import { ManifestSource } from './manifest-source.ts';
import type { CacheMetrics, Door } from './metrics/cache-metrics.ts';
import type { Descriptor, Platform, Reference } from './model.ts';
import type { BlobStore } from './ports/blob-store.ts';
import type { Clock } from './ports/clock.ts';
import type { ImageCatalog, ManifestRecord, TagRecord } from './ports/image-catalog.ts';
import type { Upstream, UpstreamRepository } from './ports/upstream.ts';
import { familiarString, repositoryName } from './reference.ts';
import type { AbandonPolicy } from './stall-watch.ts';

/** One line of Docker's pull progress stream (the JSON message the Engine API sends). */
export interface ProgressMessage {
  status: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
}

export interface PullOptions {
  platform?: Platform;
  onProgress?: (message: ProgressMessage) => void;
  /**
   * Aborted when the client stopped waiting. The pull goes on (the next client finds the image
   * stored), but a download of it that stalls is then given up (BlobFetcher's AbandonPolicy).
   */
  signal?: AbortSignal;
  /**
   * The front door whose client asked, for the hit and miss counts; none for the registry
   * door's fills, whose client requests were counted as they came.
   */
  door?: Door;
}

export interface PullResult {
  manifest: ManifestRecord;
  /** The digest the registry named (index or manifest): what `Digest:` shows. */
  source: Digest;
  upToDate: boolean;
}

export interface PullServiceDeps {
  catalog: ImageCatalog;
  blobs: BlobStore;
  upstream: Upstream;
  clock: Clock;
  /** A cached tag younger than this is served without asking the upstream. */
  tagTtlMs: number;
  /** Layers downloaded at once per pull. */
  concurrency: number;
  /** When a download nobody waits for is given up; the default suits production. */
  abandon?: AbandonPolicy;
  metrics?: CacheMetrics;
}

/** Manifests a pull found stored or had to fetch (the index and the platform's manifest). */
interface ManifestTally {
  hits: number;
  misses: number;
}

interface Resolved {
  source: Digest;
  /** Manifests to record: the index (if any) and the image manifest, image last. */
  records: ManifestRecord[];
  image: ManifestRecord;
  parsed: ImageManifest;
  platform?: string;
  upToDate: boolean;
  /** The cached tag already points here: nothing to commit but the last-used time. */
  unchanged?: boolean;
}

/**
 * Pulls an image into the cache: resolve the reference (cached tag, TTL revalidation with a
 * manifest HEAD, stale-if-error) and pick the platform here, then hand the image to the
 * importer as a registry source, which makes config and layers present and commits tag and
 * manifests atomically. The commit only succeeds while every blob is live, so a tag never
 * points at missing content (invariant 2).
 */
export class PullService {
  readonly #deps: PullServiceDeps;
  readonly #fetcher: BlobFetcher;
  /** Manifests and tag freshness, shared with the registry door (one code path). */
  readonly manifests: ManifestSource;

  constructor(deps: PullServiceDeps) {
    this.#deps = deps;
    this.#fetcher = new BlobFetcher(deps);
    this.manifests = new ManifestSource(deps);
  }

  /** The blob fetcher pulls use, so the registry door's blob requests share its downloads. */
  get blobs(): BlobFetcher {
    return this.#fetcher;
  }

  /**
   * Whether a pull of `ref` is answered from the catalog alone: a tag checked less than the TTL
   * ago, for the platform it was pulled for, with its manifest stored (the tests `#resolve`
   * and `#fromCachedTag` make, through the same helpers). Such a pull is a few catalog reads,
   * so a front door with a deadline runs it in the request rather than paying for a job.
   */
  async isFreshInCache(ref: Reference, platform?: Platform): Promise<boolean> {
    if (ref.digest) return false;
    const cached = await this.#deps.catalog.getTag(repositoryName(ref), ref.tag ?? 'latest');
    if (!cached || !this.manifests.isFresh(cached)) return false;
    if (!servesPlatform(cached, platform ? normalizePlatform(platform) : undefined)) return false;
    return (await this.#deps.catalog.getManifest(cached.manifest)) !== undefined;
  }

  async pull(ref: Reference, options: PullOptions = {}): Promise<PullResult> {
    const started = performance.now();
    const manifests: ManifestTally = { hits: 0, misses: 0 };
    const result = await this.#pull(ref, options, manifests);
    const { metrics } = this.#deps;
    metrics?.duration('pull', (performance.now() - started) / 1000);
    if (metrics && options.door) {
      const { registry } = ref;
      metrics.lookup('manifest', true, registry, options.door, manifests.hits);
      metrics.lookup('manifest', false, registry, options.door, manifests.misses);
      metrics.lookup('blob', true, registry, options.door, result.blobs.present);
      metrics.lookup('blob', false, registry, options.door, result.blobs.stored);
    }
    return { manifest: result.manifest, source: result.source, upToDate: result.upToDate };
  }

  async #pull(
    ref: Reference,
    options: PullOptions,
    manifests: ManifestTally,
  ): Promise<PullResult & { blobs: { stored: number; present: number } }> {
    const emit = options.onProgress ?? (() => {});
    const repo = { registry: ref.registry, repository: ref.repository };
    const tagOrDigest = ref.digest ?? ref.tag ?? 'latest';
    const resolved = await this.#resolve(ref, options.platform, emit, manifests);
    emit({ status: `Pulling from ${familiarPath(ref)}`, id: tagOrDigest });
    if (resolved.unchanged && resolved.upToDate) {
      // Re-committing would reset the tag's revalidation time without asking the upstream.
      await this.#deps.catalog.touchManifest(resolved.image.digest, this.#deps.clock.now(), 'pull');
      this.#finish(ref, resolved, emit);
      const present = resolved.image.blobs.length;
      return {
        manifest: resolved.image,
        source: resolved.source,
        upToDate: true,
        blobs: { stored: 0, present },
      };
    }

    const shortIds = new Map(resolved.parsed.layers.map((l) => [l.digest, shortId(l.digest)]));
    const idOf = (layer: Descriptor) => shortIds.get(layer.digest)!;
    const source = registrySource(
      { fetcher: this.#fetcher, blobs: this.#deps.blobs },
      {
        repo,
        source: resolved.source,
        ...(resolved.records.length > 1 && { index: resolved.records[0] }),
        image: resolved.image,
        parsed: resolved.parsed,
        ...(resolved.platform !== undefined && { platform: resolved.platform }),
      },
      {
        signal: options.signal,
        onLayerProgress: (layer, p) => emit(layerProgress(idOf(layer), p)),
      },
    );
    const repository = repositoryName(ref);
    const imported = await importImage(
      this.#deps,
      source,
      [{ repository, ...(ref.digest ? {} : { tag: ref.tag ?? 'latest' }), digestRef: true }],
      {
        concurrency: this.#deps.concurrency,
        pull: true,
        onLayersStart: () => {
          for (const id of new Set(shortIds.values())) {
            emit({ status: 'Pulling fs layer', id, progressDetail: {} });
          }
        },
        onLayerPresent: (layer, blob) =>
          emit({
            status: blob.existed ? 'Already exists' : 'Pull complete',
            id: idOf(layer),
            progressDetail: {},
          }),
      },
    );
    const committed = (await this.#deps.catalog.getManifest(imported.manifest)) ?? imported.image;
    this.#finish(ref, resolved, emit);
    return {
      manifest: committed,
      source: resolved.source,
      upToDate: resolved.upToDate,
      blobs: { stored: imported.blobs.stored.length, present: imported.blobs.present.length },
    };
  }

  #finish(ref: Reference, resolved: Resolved, emit: (m: ProgressMessage) => void): void {
    emit({ status: `Digest: ${resolved.source}` });
    emit({
      status: resolved.upToDate
        ? `Status: Image is up to date for ${familiarString(ref)}`
        : `Status: Downloaded newer image for ${familiarString(ref)}`,
    });
  }

  async #resolve(
    ref: Reference,
    platform: Platform | undefined,
    emit: (m: ProgressMessage) => void,
    tally: ManifestTally,
  ): Promise<Resolved> {
    const repo = { registry: ref.registry, repository: ref.repository };
    const wanted = platform ? normalizePlatform(platform) : undefined;
    if (ref.digest) {
      return this.#fromSource(repo, ref.digest, wanted, true, tally);
    }
    const state = await this.manifests.tagState(ref, {
      fetch: true,
      onStale: (error) =>
        emit({
          status: `Warning: ${ref.registry} is unavailable (${error.message}); serving the cached image`,
        }),
    });
    switch (state.kind) {
      case 'cached':
        return this.#fromCachedTag(repo, state.cached, wanted, tally);
      case 'moved':
        return this.#fromSource(repo, state.head.digest, wanted, false, tally);
      case 'fetched':
        tally.misses++;
        return this.#fromSource(repo, state.record.digest, wanted, false, tally, state.record);
      case 'head':
        throw new Error('a pull asks for the manifest itself, not a HEAD');
    }
  }

  /** The tag is known: serve it, or another platform of its stored index, without the upstream. */
  async #fromCachedTag(
    repo: UpstreamRepository,
    cached: TagRecord,
    wanted: Platform | undefined,
    tally: ManifestTally,
  ): Promise<Resolved> {
    if (servesPlatform(cached, wanted)) {
      const image = await this.#deps.catalog.getManifest(cached.manifest);
      if (image) {
        tally.hits++;
        const resolved = await this.#resolvedFromImage(
          cached.source,
          [],
          image,
          cached.platform,
          true,
        );
        return { ...resolved, unchanged: true };
      }
    }
    return this.#fromSource(repo, cached.source, wanted, true, tally);
  }

  /**
   * Resolves the manifest the registry names by `digest` (stored, fetched, or just fetched by
   * tag), then the platform's image manifest when it is an index. `known` says the reference
   * was already cached, so complete content counts as "up to date".
   */
  async #fromSource(
    repo: UpstreamRepository,
    digest: Digest,
    wanted: Platform | undefined,
    known: boolean,
    tally: ManifestTally,
    fetched?: ManifestRecord,
  ): Promise<Resolved> {
    const top = fetched ?? (await this.#manifestRecord(repo, digest, tally));
    const parsed = parseManifest(top.raw, top.mediaType);
    if (parsed.kind === 'image') {
      return this.#resolvedFromImage(digest, [], top, undefined, known);
    }
    const target = wanted ?? DEFAULT_PLATFORM;
    const child = selectPlatform(parsed, target);
    if (!child) {
      throw new NotFoundError(
        `no matching manifest for ${formatPlatform(target)} in the manifest list entries`,
      );
    }
    const image = await this.#manifestRecord(repo, child.digest, tally);
    return this.#resolvedFromImage(digest, [top], image, formatPlatform(target), known);
  }

  async #resolvedFromImage(
    source: Digest,
    parents: ManifestRecord[],
    image: ManifestRecord,
    platform: string | undefined,
    known: boolean,
  ): Promise<Resolved> {
    const parsed: ParsedManifest = parseManifest(image.raw, image.mediaType);
    if (parsed.kind !== 'image') {
      throw new ImageCacheError('UNSUPPORTED_MEDIA_TYPE', `${source} nests an index in an index`);
    }
    const alreadyComplete = image.image !== undefined && (await this.#allPresent(image.blobs));
    return {
      source,
      records: [...parents, image],
      image,
      parsed,
      platform,
      upToDate: known && alreadyComplete,
    };
  }

  async #allPresent(digests: Digest[]): Promise<boolean> {
    for (const digest of digests) {
      const record = await this.#deps.catalog.getBlob(digest);
      if (record?.state !== 'live') return false;
    }
    return true;
  }

  /** A manifest from the catalog if stored (no upstream request), else fetched and verified. */
  async #manifestRecord(
    repo: UpstreamRepository,
    digest: Digest,
    tally: ManifestTally,
  ): Promise<ManifestRecord> {
    const stored = await this.#deps.catalog.getManifest(digest);
    if (stored) {
      tally.hits++;
      return stored;
    }
    // Fetched now, or by a registry client a moment ago: a miss either way.
    tally.misses++;
    return this.manifests.record(repo, digest);
  }
}

function layerProgress(id: string, p: BlobProgress): ProgressMessage {
  if (p.phase === 'downloading') {
    return { status: 'Downloading', id, progressDetail: { current: p.current, total: p.total } };
  }
  if (p.phase === 'verifying') return { status: 'Verifying Checksum', id, progressDetail: {} };
  return { status: 'Download complete', id, progressDetail: {} };
}

/** "library/nginx" for Docker Hub, the full path elsewhere, as Docker's "Pulling from". */
function familiarPath(ref: Reference): string {
  return ref.registry === 'docker.io' ? ref.repository : `${ref.registry}/${ref.repository}`;
}

/** Whether the tag's image is the one for `wanted` (any platform when either side names none). */
function servesPlatform(cached: TagRecord, wanted: Platform | undefined): boolean {
  return !wanted || !cached.platform || cached.platform === formatPlatform(wanted);
}
