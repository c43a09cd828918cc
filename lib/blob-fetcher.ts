import type { Digest } from './digest.ts';
import { ImageCacheError } from './errors.ts';
import { countLayerFiles } from './layer-stats.ts';
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
  /** sha256 of the uncompressed layer, when it was computed during this fetch. */
  diffId?: Digest;
}

export interface BlobFetcherDeps {
  catalog: Catalog;
  blobs: BlobStore;
  upstream: Upstream;
  clock: Clock;
  /** How long to wait for the collector to finish deleting a blob we need again. */
  deletionWaitMs?: number;
}

const PROGRESS_EVERY_BYTES = 512 * 1024;
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

  constructor(deps: BlobFetcherDeps) {
    this.#deps = deps;
  }

  async ensure(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options: { isLayer: boolean; onProgress?: (p: BlobProgress) => void },
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
          return { existed: true, unpackedSize: record?.unpackedSize };
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

  #fetchShared(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options: { isLayer: boolean; onProgress?: (p: BlobProgress) => void },
  ): Promise<EnsuredBlob | 'retry'> {
    let progress = this.#progress.get(blob.digest);
    if (!progress) {
      progress = new Broadcast<BlobProgress>();
      this.#progress.set(blob.digest, progress);
    }
    const unsubscribe = options.onProgress ? progress.subscribe(options.onProgress) : () => {};
    const shared = progress;
    return this.#flights
      .run(blob.digest, async () => {
        try {
          return await this.#fetch(repo, blob, options.isLayer, shared);
        } finally {
          this.#progress.delete(blob.digest);
        }
      })
      .finally(unsubscribe);
  }

  async #fetch(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    isLayer: boolean,
    progress: Broadcast<BlobProgress>,
  ): Promise<EnsuredBlob | 'retry'> {
    const { catalog, blobs, upstream, clock } = this.#deps;
    progress.emit({ phase: 'downloading', current: 0, total: blob.size });
    // The store hashes while it writes and commits only on a match: one sha256 pass suffices.
    const body = await upstream.getBlob(repo, blob, { verify: 'size-only' });
    const stats = isLayer ? countLayerFiles({ diffId: false }) : undefined;
    let seen = 0;
    let reported = 0;
    const observer = new TeeStream(stats?.stream, {
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
    try {
      await blobs.write(observer, { digest: blob.digest, size: blob.size });
    } catch (error) {
      throw upstreamFailure ?? error;
    }
    progress.emit({ phase: 'verifying' });
    const layer = stats ? await stats.result.catch(() => undefined) : undefined;
    const state = await catalog.addBlob(
      { digest: blob.digest, size: blob.size, unpackedSize: layer?.fileBytes },
      clock.now(),
    );
    if (state === 'deleting') {
      // The collector claimed the digest while we wrote: our bytes may be gone with it.
      await waitForDeletion(this.#deps.catalog, blob.digest, this.#deps.deletionWaitMs);
      return 'retry';
    }
    progress.emit({ phase: 'stored' });
    return { existed: false, unpackedSize: layer?.fileBytes, diffId: layer?.diffId };
  }
}
