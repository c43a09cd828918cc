import type { Readable } from 'node:stream';
import type { Digest } from './digest.ts';
import { ImageCacheError, InvalidImageError, NotFoundError, UpstreamError } from './errors.ts';
import { countLayerFiles, type LayerStats } from './layer-stats.ts';
import type { CacheMetrics } from './metrics/cache-metrics.ts';
import type { BlobStore, ByteRange } from './ports/blob-store.ts';
import type { Clock } from './ports/clock.ts';
import type { ImageCatalog } from './ports/image-catalog.ts';
import type { Upstream, UpstreamRepository } from './ports/upstream.ts';
import { Broadcast, SingleFlight } from './single-flight.ts';
import { type AbandonPolicy, DEFAULT_ABANDON, watchForStall } from './stall-watch.ts';
import { TeeStream } from './tee-stream.ts';
import { VerifiedFeed } from './verified-feed.ts';
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
  catalog: ImageCatalog;
  blobs: BlobStore;
  upstream: Upstream;
  clock: Clock;
  /** How long to wait for the collector to finish deleting a blob we need again. */
  deletionWaitMs?: number;
  /** When a download nobody waits for anymore is given up; see AbandonPolicy. */
  abandon?: AbandonPolicy;
  /** Hears of downloads joined and bytes fetched. */
  metrics?: Pick<CacheMetrics, 'joined' | 'bytesFetched'>;
}

/** What a pull passes along with a blob it needs. */
export interface EnsureOptions {
  /** A layer must be a tar (its diff_id is answered); anything else is bytes. */
  isLayer: boolean;
  onProgress?: (p: BlobProgress) => void;
  /** Aborted when the caller's client left: the download may then be abandoned if it stalls. */
  signal?: AbortSignal;
}

/** A blob's bytes for a registry client. */
export interface OpenedBlob {
  body: Readable;
  /** Whether they come from the store (false: streamed from the upstream as they arrive). */
  cached: boolean;
}

/**
 * What one download learnt: the layer facts, or why the bytes are no layer; `unread` when it
 * was not read as a layer (a registry client's), so a layer's facts come from the stored blob.
 */
type Fetched = { facts: LayerFacts; notALayer?: Error; unread?: true } | 'retry';
type LayerFacts = Pick<EnsuredBlob, 'unpackedSize' | 'diffId'>;

/** A pull or client waiting on a download; without a signal it waits for good (a job). */
interface Waiter {
  signal?: AbortSignal;
}

const PROGRESS_EVERY_BYTES = 512 * 1024;
/** Sockets deliver 16-64 KiB; every piece costs the store a thread-pool round trip. */
const COALESCE_BYTES = 1024 * 1024;
/** A client streaming a download that stops reading for this long is dropped from it. */
const CLIENT_STALL_MS = 30_000;
const MAX_ATTEMPTS = 5;

/**
 * Makes a blob present and live in the cache, following the GC protocol: a live record is
 * touched (so the collector's conditional transition fails), a blob being deleted is treated
 * as absent and fetched again only after its deletion finished. Concurrent requests for the
 * same digest share one upstream download and its progress, whoever asks: pulls, and registry
 * clients, the first of which gets the bytes as they arrive.
 */
export class BlobFetcher {
  readonly #deps: BlobFetcherDeps;
  readonly #flights: SingleFlight<Fetched>;
  readonly #progress = new Map<string, Broadcast<BlobProgress>>();
  readonly #waiters = new Map<string, Set<Waiter>>();

  constructor(deps: BlobFetcherDeps) {
    this.#deps = deps;
    this.#flights = new SingleFlight(() => deps.metrics?.joined('blob'));
  }

  async ensure(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options: EnsureOptions,
  ): Promise<EnsuredBlob> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const present = await this.#present(blob, options.isLayer);
      if (present === 'again') continue;
      if (present) return { existed: true, ...present };
      const fetched = await this.#startShared(repo, blob, options).fetched;
      // Stored but not read as a layer: the next round reads the stored blob (#present).
      if (fetched === 'retry' || (options.isLayer && fetched.unread)) continue;
      if (options.isLayer && fetched.notALayer) throw fetched.notALayer;
      return { existed: false, ...fetched.facts };
    }
    throw notLive(blob.digest);
  }

  /** Whether a download of the digest is under way. */
  downloading(digest: Digest): boolean {
    return this.#flights.has(digest);
  }

  /**
   * A blob's bytes for a registry client: from the store when present; else the client that
   * starts the download gets the bytes as they arrive while they are stored (the last piece
   * held until they verified, see VerifiedFeed). A client that joins a download under way, or
   * asks for a range, is answered from the store once the download is complete.
   */
  async open(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options: { range?: ByteRange; signal?: AbortSignal } = {},
  ): Promise<OpenedBlob> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      // Stored bytes are right by their name, and a started read survives a collection (an open
      // file, an S3 GET): no catalog round trip on the way to a client.
      try {
        return { body: await this.#deps.blobs.read(blob.digest, options.range), cached: true };
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
      }
      const present = await this.#present(blob, false);
      if (present === 'again') continue;
      if (present) continue; // Stored just now: read it.

      // A download that ended between our read and here stored the blob: read it.
      if (!this.#flights.has(blob.digest) && (await this.#deps.blobs.stat(blob.digest))) continue;
      if (options.range || this.#flights.has(blob.digest)) {
        await this.#startShared(repo, blob, { isLayer: false, signal: options.signal }).fetched;
        continue;
      }
      const feed = new VerifiedFeed();
      const { fetched, started } = this.#startShared(
        repo,
        blob,
        { isLayer: false, signal: options.signal },
        feed,
      );
      // Its outcome reaches the client through the feed; nobody else awaits it here.
      fetched.catch(() => {});
      if (started) return { body: feed, cached: false };
      // Another download of the digest began in between: answer from the store after it.
      await fetched.catch(() => {});
    }
    throw notLive(blob.digest);
  }

  /**
   * Whether the blob is stored and live (touched, so the collector keeps it), with its layer
   * facts; false when it must be fetched; 'again' when its state changed under us.
   */
  async #present(
    blob: { digest: Digest; size: number },
    isLayer: boolean,
  ): Promise<LayerFacts | false | 'again'> {
    const { catalog, blobs, clock } = this.#deps;
    const state = await catalog.touchBlob(blob.digest, clock.now());
    if (state === 'deleting') {
      await waitForDeletion(catalog, blob.digest, this.#deps.deletionWaitMs);
      return 'again';
    }
    // No record, or a live record without bytes (lost file): fetch, the write restores them.
    if (state === 'absent' || !(await blobs.stat(blob.digest))) return false;
    const record = await catalog.getBlob(blob.digest);
    if (record?.state !== 'live') return 'again';
    if (!isLayer || record.diffId !== undefined) {
      return { unpackedSize: record.unpackedSize, diffId: record.diffId };
    }
    // Stored before diff_ids were recorded, or stored as something else: read it as a layer.
    const facts = await this.#inspectStored(blob).catch((error: unknown) => {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    });
    if (!facts || !(await catalog.fillLayerFacts(blob.digest, facts))) return 'again';
    return facts;
  }

  /** Unpacks a stored layer to learn its diff_id and size. */
  async #inspectStored(blob: { digest: Digest }): Promise<LayerFacts> {
    const stats = countLayerFiles({ diffId: 'compressed-only' });
    const body = await this.#deps.blobs.read(blob.digest);
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

  /**
   * Joins the download of the digest under way, or starts it (then `started`, and `feed`, if
   * given, gets the bytes as they arrive).
   */
  #startShared(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    options: EnsureOptions,
    feed?: VerifiedFeed,
  ): { fetched: Promise<Fetched>; started: boolean } {
    const key = blob.digest;
    let progress = this.#progress.get(key);
    if (!progress) {
      progress = new Broadcast<BlobProgress>();
      this.#progress.set(key, progress);
    }
    const unsubscribe = options.onProgress ? progress.subscribe(options.onProgress) : () => {};
    const shared = progress;
    let waiters = this.#waiters.get(key);
    if (!waiters) {
      waiters = new Set();
      this.#waiters.set(key, waiters);
    }
    const waiter: Waiter = { signal: options.signal };
    waiters.add(waiter);
    const someoneWaits = () => [...(this.#waiters.get(key) ?? [])].some((w) => !w.signal?.aborted);
    let started = false;
    // SingleFlight runs the work at once when it is new, so `started` is known on return.
    const fetched = this.#flights
      .run(key, async () => {
        started = true;
        try {
          return await this.#fetch(repo, blob, shared, someoneWaits, feed);
        } finally {
          this.#progress.delete(key);
          this.#waiters.delete(key);
        }
      })
      .finally(() => {
        unsubscribe();
        this.#waiters.get(key)?.delete(waiter);
      });
    return { fetched, started };
  }

  async #fetch(
    repo: UpstreamRepository,
    blob: { digest: Digest; size: number },
    progress: Broadcast<BlobProgress>,
    someoneWaits: () => boolean,
    feed: VerifiedFeed | undefined,
  ): Promise<Fetched> {
    const { catalog, blobs, upstream, clock } = this.#deps;
    progress.emit({ phase: 'downloading', current: 0, total: blob.size });
    let body: Readable;
    try {
      // The store hashes while it writes and commits only on a match: one sha256 pass suffices.
      body = await upstream.getBlob(repo, blob, { verify: 'size-only' });
    } catch (error) {
      feed?.destroy(error as Error);
      throw error;
    }
    // A pull's download is read as a layer on the way (its diff_id, its file sizes). A registry
    // client's is not, to keep its bytes moving: whoever later wants it as a layer (the fill)
    // reads the stored blob once (#present).
    const stats = feed ? undefined : countLayerFiles({ diffId: 'compressed-only' });
    let seen = 0;
    let reported = 0;
    // The copy is the layer reader, or the client (gathered pieces: a socket write per MiB).
    const observer = new TeeStream(feed ?? stats?.stream, {
      coalesceBytes: COALESCE_BYTES,
      ...(feed && { copyStallMs: CLIENT_STALL_MS }),
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
    const stopWatching = watchForStall(
      this.#deps.abandon ?? DEFAULT_ABANDON,
      () => seen,
      someoneWaits,
      (moved) =>
        body.destroy(
          new UpstreamError(
            'UPSTREAM_TIMEOUT',
            `gave up blob ${blob.digest} from ${repo.registry}: no client waits for it anymore and the registry sent ${moved} bytes in ${(this.#deps.abandon ?? DEFAULT_ABANDON).windowMs / 1000}s`,
          ),
        ),
    );
    const written = blobs.write(observer, { digest: blob.digest, size: blob.size });
    feed?.settle(written);
    try {
      await written;
    } catch (error) {
      throw upstreamFailure ?? error;
    } finally {
      stopWatching();
    }
    progress.emit({ phase: 'verifying' });
    let facts: LayerFacts = {};
    let refusal: Error | undefined;
    if (stats) {
      try {
        facts = layerFacts(blob.digest, await stats.result);
      } catch (error) {
        refusal = notALayer(blob.digest, error as Error);
      }
    }
    // Recorded either way: the bytes are what their digest says. A pull that wanted a layer
    // refuses them (and tags nothing); a registry client may want them as they are.
    const state = await catalog.addBlob(
      { digest: blob.digest, size: blob.size, ...facts },
      clock.now(),
    );
    if (state === 'deleting') {
      // The collector claimed the digest while we wrote: our bytes may be gone with it.
      await waitForDeletion(this.#deps.catalog, blob.digest, this.#deps.deletionWaitMs);
      return 'retry';
    }
    this.#deps.metrics?.bytesFetched(repo.registry, blob.size);
    progress.emit({ phase: 'stored' });
    if (!stats) return { facts, unread: true };
    return refusal ? { facts, notALayer: refusal } : { facts };
  }
}

/** An uncompressed layer is its own diff: its digest, which the store verified, is the diff_id. */
function layerFacts(digest: Digest, layer: LayerStats): LayerFacts {
  const diffId = layer.compression === 'none' ? digest : layer.diffId;
  return {
    ...(layer.fileBytes !== undefined && { unpackedSize: layer.fileBytes }),
    ...(diffId !== undefined && { diffId }),
  };
}

function notALayer(digest: Digest, cause: Error): InvalidImageError {
  return new InvalidImageError(`layer ${digest} is not a valid tar archive: ${cause.message}`);
}

function notLive(digest: Digest): ImageCacheError {
  return new ImageCacheError(
    'BLOB_NOT_LIVE',
    `blob ${digest} kept being garbage collected while it was fetched; try again`,
  );
}
