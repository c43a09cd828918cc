import type { Digest } from './digest.ts';
import { ImageCacheError, InvalidImageError, NotFoundError, UpstreamError } from './errors.ts';
import { countLayerFiles, type LayerStats } from './layer-stats.ts';
import type { BlobStore } from './ports/blob-store.ts';
import type { Catalog } from './ports/catalog.ts';
import type { Clock } from './ports/clock.ts';
import type { Upstream, UpstreamRepository } from './ports/upstream.ts';
import { Broadcast, SingleFlight } from './single-flight.ts';
import { TeeStream } from './tee-stream.ts';
import { waitForDeletion } from './wait-for-deletion.ts';

export type BlobProgress =
  | { phase: 'downloading'; current: number; total: number }
  | { phase: 'verifying' }
  | { phase: 'stored' };

export interface EnsuredBlob {
  /** True when the bytes were already in the cache and nothing was fetched. */
  existed: boolean;
  /** Bytes of the files in a layer, when known. */
  unpackedSize?: number;
  /**
   * sha256 of the uncompressed layer. Always set for a layer, but for a zstd layer on a Node
   * without a zstd decoder (before 22.15), where it cannot be computed.
   */
  diffId?: Digest;
}

export interface BlobFetcherDeps {
  catalog: Catalog;
  blobs: BlobStore;
  upstream: Upstream;
  clock: Clock;
  /** How long to wait for the collector to finish deleting a blob we need again. */
  deletionWaitMs?: number;
  /** When a download nobody waits for anymore is given up; see DEFAULT_ABANDON. */
  abandon?: AbandonPolicy;
}

/**
 * A download whose every waiter left (their clients disconnected) goes on while it makes
 * progress, so the next pull finds the blob stored; one that brings fewer than `minBytes` in a
 * window of `windowMs` is given up, closing its upstream connection. An upstream dripping a byte
 * a second would otherwise hold a connection, a temp file and a slot for hours.
 */
export interface AbandonPolicy {
  windowMs: number;
  minBytes: number;
}

export const DEFAULT_ABANDON: AbandonPolicy = { windowMs: 30_000, minBytes: 256 * 1024 };

/** A pull waiting on a download; without a signal it waits for good (a job, the CLI). */
interface Waiter {
  signal?: AbortSignal;
}

const PROGRESS_EVERY_BYTES = 512 * 1024;
const COALESCE_BYTES = 1024 * 1024;
const MAX_ATTEMPTS = 5;

/**
 * Makes a blob present and live in the cache, following the GC protocol: a live record is
 * touched (so the collector's conditional transition fails), a blob being deleted is treated
 * as absent and fetched again only after its deletion finished. Concurrent requests for the
 * same digest share one upstream fetch and its progress.
 */
export class BlobFetcher {
  readonly #deps: BlobFetcherDeps;
  /** 'retry' means the collector deleted the digest under us: fetch it once more. */
  readonly #flights = new SingleFlight<EnsuredBlob | 'retry'>();
  readonly #progress = new Map<string, Broadcast<BlobProgress>>();
  readonly #waiters = new Map<string, Set<Waiter>>();

  constructor(deps: BlobFetcherDeps) {
    this.#deps = deps;
  }

  async ensure(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options: EnsureOptions,
  ): Promise<EnsuredBlob> {
    const { catalog, blobs, clock } = this.#deps;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const state = await catalog.touchBlob(blob.digest, clock.now());
      if (state === 'deleting') {
        await waitForDeletion(this.#deps.catalog, blob.digest, this.#deps.deletionWaitMs);
        continue;
      }
      if (state === 'live') {
        const stored = await blobs.stat(blob.digest);
        if (stored) {
          const record = await catalog.getBlob(blob.digest);
          // Collected since the touch: start over.
          if (record?.state !== 'live') continue;
          if (options.isLayer && record.diffId === undefined) {
            // Stored before diff_ids were recorded, or stored as a config: read it once as a layer.
            const facts = await this.#inspectStoredLayer(blob).catch((error: unknown) => {
              if (error instanceof NotFoundError) return undefined;
              throw error;
            });
            // Collected while it was read: start over.
            if (!facts || !(await catalog.fillLayerFacts(blob.digest, facts))) continue;
            return { existed: true, ...facts };
          }
          return { existed: true, unpackedSize: record.unpackedSize, diffId: record.diffId };
        }
        // A live record without bytes (lost file): fetch again, the write restores them.
      }
      const result = await this.#fetchShared(repo, blob, options);
      if (result !== 'retry') return result;
    }
    throw new ImageCacheError(
      'BLOB_NOT_LIVE',
      `blob ${blob.digest} kept being garbage collected while it was pulled; try again`,
    );
  }

  /** Unpacks a stored layer to learn its diff_id and size. */
  async #inspectStoredLayer(blob: {
    digest: Digest;
    size: number;
  }): Promise<Pick<EnsuredBlob, 'unpackedSize' | 'diffId'>> {
    const { blobs } = this.#deps;
    const stats = countLayerFiles({ diffId: 'compressed-only' });
    const body = await blobs.read(blob.digest);
    body.on('error', (error) => stats.stream.destroy(error));
    body.pipe(stats.stream);
    // A zstd layer without a decoder settles after its first bytes: no need to read the rest.
    const layer = await stats.result
      .catch((error: Error) => {
        throw notALayer(blob.digest, error);
      })
      .finally(() => body.destroy());
    return layerFacts(blob.digest, layer);
  }

  #fetchShared(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options: EnsureOptions,
  ): Promise<EnsuredBlob | 'retry'> {
    let progress = this.#progress.get(blob.digest);
    if (!progress) {
      progress = new Broadcast<BlobProgress>();
      this.#progress.set(blob.digest, progress);
    }
    const unsubscribe = options.onProgress ? progress.subscribe(options.onProgress) : () => {};
    const shared = progress;
    // A digest fetched as a layer is unpacked and checked, as a config it is not: a manifest
    // naming a config as a layer must not ride on (or be answered by) the config's fetch.
    const key = `${options.isLayer ? 'layer' : 'blob'}|${blob.digest}`;
    let waiters = this.#waiters.get(key);
    if (!waiters) {
      waiters = new Set();
      this.#waiters.set(key, waiters);
    }
    const waiter: Waiter = { signal: options.signal };
    waiters.add(waiter);
    const someoneWaits = () => [...(this.#waiters.get(key) ?? [])].some((w) => !w.signal?.aborted);
    return this.#flights
      .run(key, async () => {
        try {
          return await this.#fetch(repo, blob, options.isLayer, shared, someoneWaits);
        } finally {
          this.#progress.delete(blob.digest);
          this.#waiters.delete(key);
        }
      })
      .finally(() => {
        unsubscribe();
        this.#waiters.get(key)?.delete(waiter);
      });
  }

  async #fetch(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    isLayer: boolean,
    progress: Broadcast<BlobProgress>,
    someoneWaits: () => boolean,
  ): Promise<EnsuredBlob | 'retry'> {
    const { catalog, blobs, upstream, clock } = this.#deps;
    progress.emit({ phase: 'downloading', current: 0, total: blob.size });
    // The store hashes while it writes and commits only on a match: one sha256 pass suffices.
    const body = await upstream.getBlob(repo, blob, { verify: 'size-only' });
    const stats = isLayer ? countLayerFiles({ diffId: 'compressed-only' }) : undefined;
    let seen = 0;
    let reported = 0;
    const observer = new TeeStream(stats?.stream, {
      // Sockets deliver 16-64 KiB; every piece costs the store a thread-pool round trip.
      coalesceBytes: COALESCE_BYTES,
      onPiece: (piece) => {
        seen += piece.length;
        if (seen - reported < PROGRESS_EVERY_BYTES && seen !== blob.size) return;
        reported = seen;
        progress.emit({ phase: 'downloading', current: seen, total: blob.size });
      },
    });
    // The upstream may fail before the store attached its pipeline (it creates folders
    // first), so the failure is kept here and reported as the cause: it names the registry.
    let upstreamFailure: Error | undefined;
    observer.on('error', () => {});
    body.on('error', (error) => {
      upstreamFailure = error;
      observer.destroy(error);
    });
    body.pipe(observer);
    const stopWatching = this.#abandonWhenStalled(body, () => seen, someoneWaits, repo, blob);
    try {
      await blobs.write(observer, { digest: blob.digest, size: blob.size });
    } catch (error) {
      throw upstreamFailure ?? error;
    } finally {
      stopWatching();
    }
    progress.emit({ phase: 'verifying' });
    // A layer that is not a tar is refused before it is recorded: its bytes are an orphan file
    // for the collector, and no image can name it (invariant 6).
    const layer = stats
      ? layerFacts(
          blob.digest,
          await stats.result.catch((error: Error) => {
            throw notALayer(blob.digest, error);
          }),
        )
      : {};
    const state = await catalog.addBlob(
      { digest: blob.digest, size: blob.size, ...layer },
      clock.now(),
    );
    if (state === 'deleting') {
      // The collector claimed the digest while we wrote: our bytes may be gone with it.
      await waitForDeletion(this.#deps.catalog, blob.digest, this.#deps.deletionWaitMs);
      return 'retry';
    }
    progress.emit({ phase: 'stored' });
    return { existed: false, ...layer };
  }

  /** Gives up the download (destroying `body`) once nobody waits and it stalls; see AbandonPolicy. */
  #abandonWhenStalled(
    body: { destroy(error: Error): void },
    seen: () => number,
    someoneWaits: () => boolean,
    repo: UpstreamRepository,
    blob: { digest: Digest },
  ): () => void {
    const { windowMs, minBytes } = this.#deps.abandon ?? DEFAULT_ABANDON;
    const ticks = 10;
    // Bytes seen at each of the last ticks + 1 samples: their spread covers one window.
    const marks: number[] = [seen()];
    const timer = setInterval(() => {
      marks.push(seen());
      if (marks.length > ticks + 1) marks.shift();
      if (marks.length <= ticks) return;
      const moved = marks.at(-1)! - marks[0]!;
      if (moved >= minBytes || someoneWaits()) return;
      clearInterval(timer);
      body.destroy(
        new UpstreamError(
          'UPSTREAM_TIMEOUT',
          `gave up blob ${blob.digest} from ${repo.registry}: no client waits for it anymore and the registry sent ${moved} bytes in ${windowMs / 1000}s`,
        ),
      );
    }, windowMs / ticks);
    timer.unref();
    return () => clearInterval(timer);
  }
}

/** What a pull passes along with a blob it needs. */
export interface EnsureOptions {
  isLayer: boolean;
  onProgress?: (p: BlobProgress) => void;
  /** Aborted when the pull's client left: the download may then be abandoned if it stalls. */
  signal?: AbortSignal;
}

/** An uncompressed layer is its own diff: its digest, which the store verified, is the diff_id. */
function layerFacts(
  digest: Digest,
  layer: LayerStats,
): Pick<EnsuredBlob, 'unpackedSize' | 'diffId'> {
  const diffId = layer.compression === 'none' ? digest : layer.diffId;
  return {
    ...(layer.fileBytes !== undefined && { unpackedSize: layer.fileBytes }),
    ...(diffId !== undefined && { diffId }),
  };
}

function notALayer(digest: Digest, cause: Error): InvalidImageError {
  return new InvalidImageError(`layer ${digest} is not a valid tar archive: ${cause.message}`);
}
