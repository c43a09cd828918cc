import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Digest } from './digest.ts';
import type { GcObserver } from './metrics/cache-metrics.ts';
import { type BlobStore, type SweptStaging, stagingSweeperOf } from './ports/blob-store.ts';
import type { Clock } from './ports/clock.ts';
import type { GcReport, GcReportLog } from './ports/gc-report-log.ts';
import type { BlobRecord, ImageCatalog } from './ports/image-catalog.ts';

/**
 * The blob garbage collector: mark-and-sweep over the catalog, with the per-blob state machine
 * (live -> deleting -> gone) driven only by the catalog's conditional writes.
 *
 * Why it is safe with a grace window of zero: the blob records are read (with their
 * generations) BEFORE the roots. A writer commits its manifests and touches every blob in one
 * `commitImage`, which fails unless all of them are live. So a commit either happened before
 * the snapshot and the roots (the blob is marked), or it bumps the generation after the
 * snapshot (our conditional live -> deleting fails), or it comes after our transition (it fails
 * with BlobNotLiveError and the writer fetches again). Bytes are only removed while the record
 * says deleting, which writers treat as absent.
 *
 * Two things the catalog must guarantee for this (the conformance suite checks both): the
 * transitions are conditional writes, and a blob record created again after a deletion never
 * repeats a generation its earlier life had (else a stale snapshot could win: ABA).
 */

export interface GcDeps {
  catalog: ImageCatalog;
  /** Where a collection that changed something leaves its report. */
  gcReports: GcReportLog;
  blobs: BlobStore;
  clock: Clock;
  /** Shared by every collection of this process over `blobs`. */
  gcClaims: CollectorClaims;
  /** Hears of every collection that ran (/metrics). */
  metrics?: GcObserver;
}

export interface GcOptions {
  /** Unreferenced blobs touched within this window are kept. */
  graceMs: number;
  /** Computes the report without changing anything (and without storing it). */
  dryRun?: boolean;
  trigger?: GcReport['trigger'];
  /**
   * Files without a catalog record younger than max(grace, this) are spared. A safety margin,
   * not an optimisation: a writer renames its file before it records the blob, and a file
   * deleted in between would leave a live record without bytes. Use 0 only when nothing writes.
   */
  orphanMinAgeMs?: number;
  /** Blobs deleted at once. */
  concurrency?: number;
}

export interface CollectOptions {
  trigger?: GcReport['trigger'];
  concurrency?: number;
}

export const DEFAULT_ORPHAN_MIN_AGE_MS = 15 * 60_000;
export const DEFAULT_GC_CONCURRENCY = 16;
/** Transitions issued together; bounds how long a blob waits in deleting for its chunk. */
const SWEEP_CHUNK = 256;
/** Errors listed in one report; the rest are counted in a final line. */
const MAX_REPORTED_ERRORS = 50;

/**
 * Digests a collector of this process is working on: at most one collector handles a digest at
 * a time. Without it, a collector resuming a `deleting` record could delete bytes a writer
 * stored right after another collector finished the same digest. Across processes only the
 * re-check in `resume` guards that (a window of one catalog read); the embedded server runs
 * every collection in its one process. The composition owns one per blob store.
 */
export class CollectorClaims {
  readonly #held = new Set<Digest>();

  /** Answers false when another collector holds the digest. */
  claim(digest: Digest): boolean {
    if (this.#held.has(digest)) return false;
    this.#held.add(digest);
    return true;
  }

  release(digest: Digest): void {
    this.#held.delete(digest);
  }
}

/** A full collection: every blob record, then files the catalog does not know (orphans). */
export async function collectGarbage(deps: GcDeps, options: GcOptions): Promise<GcReport> {
  const run = new Run(deps, options.trigger ?? 'manual', options.graceMs, options.dryRun ?? false);
  const concurrency = options.concurrency ?? DEFAULT_GC_CONCURRENCY;
  const cutoff = run.startedAt - options.graceMs;

  // The snapshot MUST precede the roots; see the module comment.
  const snapshot = await deps.catalog.listBlobs();
  const live = await markLive(deps.catalog);
  const known = new Set<Digest>();
  const candidates: BlobRecord[] = [];
  const stale: BlobRecord[] = [];
  for (const record of snapshot) {
    known.add(record.digest);
    run.examine(record.size);
    if (record.state === 'deleting') stale.push(record);
    else if (!live.has(record.digest) && record.touchedAt <= cutoff) candidates.push(record);
    else run.keep(record.size);
  }
  // Release the big arrays before the sweep; only the digests are still needed.
  snapshot.length = 0;
  live.clear();

  for (let i = 0; i < candidates.length; i += SWEEP_CHUNK) {
    await run.sweep(candidates.slice(i, i + SWEEP_CHUNK), concurrency);
  }
  await forEachLimited(stale, concurrency, (record) => run.resume(record));

  const orphanCutoff =
    run.startedAt - Math.max(options.graceMs, options.orphanMinAgeMs ?? DEFAULT_ORPHAN_MIN_AGE_MS);
  const orphans = orphanCandidates(deps.blobs, known, orphanCutoff, (size) => run.examine(size));
  for await (const chunk of chunks(orphans, SWEEP_CHUNK))
    await run.claimOrphans(chunk, concurrency);

  // What writes that died halfway (a killed pull or load) staged but never committed. Staging
  // of a live writer is spared like a fresh orphan: a grace of 0 must not break writes under way.
  const sweeper = stagingSweeperOf(deps.blobs);
  if (sweeper && !options.dryRun) {
    const idleMs = Math.max(options.graceMs, options.orphanMinAgeMs ?? DEFAULT_ORPHAN_MIN_AGE_MS);
    run.staging = await sweeper.sweepStaging(idleMs, run.startedAt);
  }
  return run.finish();
}

/** Runs the collector, grace zero, over exactly the blobs a removal freed (rmi, prune, retention). */
export function collectFreed(deps: GcDeps) {
  return (digests: Iterable<Digest>) => collectBlobs(deps, digests, { trigger: 'prune' });
}

/**
 * Collects only the given blobs, with grace zero: what `prune` calls with the blobs of the
 * manifests it removed, so SpaceReclaimed is what this run actually deleted. Same protocol:
 * the records are read before the roots; records another collector holds are left to it. Its
 * cost grows with the blobs given, not with the catalog: no request path reads every manifest.
 */
export async function collectBlobs(
  deps: GcDeps,
  digests: Iterable<Digest>,
  options: CollectOptions = {},
): Promise<GcReport> {
  const run = new Run(deps, options.trigger ?? 'prune', 0, false);
  const snapshot: BlobRecord[] = [];
  for (const digest of new Set(digests)) {
    const record = await deps.catalog.getBlob(digest);
    if (record) snapshot.push(record);
  }
  // Only the roots that name these blobs (an index lookup, not every manifest): still after
  // the snapshot, as the protocol requires.
  const live = await deps.catalog.referencedBlobs(snapshot.map((record) => record.digest));
  const candidates: BlobRecord[] = [];
  for (const record of snapshot) {
    run.examine(record.size);
    if (record.state === 'live' && !live.has(record.digest) && record.touchedAt <= run.startedAt) {
      candidates.push(record);
    } else {
      run.keep(record.size);
    }
  }
  const concurrency = options.concurrency ?? DEFAULT_GC_CONCURRENCY;
  for (let i = 0; i < candidates.length; i += SWEEP_CHUNK) {
    await run.sweep(candidates.slice(i, i + SWEEP_CHUNK), concurrency);
  }
  return run.finish();
}

/** Every blob named by a stored manifest. Indexes name none themselves: their children do. */
async function markLive(catalog: ImageCatalog): Promise<Set<Digest>> {
  const live = new Set<Digest>();
  for (const manifest of await catalog.listManifests()) {
    for (const digest of manifest.blobs) live.add(digest);
  }
  return live;
}

interface OrphanFile {
  digest: Digest;
  size: number;
  /** Older than the orphan cutoff; younger files may be writes in progress. */
  old: boolean;
}

/** Streams the store's listing; only files without a record in the snapshot come out. */
async function* orphanCandidates(
  blobs: BlobStore,
  known: ReadonlySet<Digest>,
  cutoff: number,
  examine: (size: number) => void,
): AsyncIterable<OrphanFile> {
  for await (const file of blobs.list()) {
    if (known.has(file.digest)) continue;
    examine(file.size);
    yield { digest: file.digest, size: file.size, old: file.modifiedAt <= cutoff };
  }
}

interface Tally {
  blobs: number;
  bytes: number;
}

/** One collection's counters and the per-blob steps; a failing blob is recorded, not fatal. */
class Run {
  readonly startedAt: number;
  readonly #deps: GcDeps;
  readonly #trigger: GcReport['trigger'];
  readonly #graceMs: number;
  readonly #dryRun: boolean;
  readonly #started = performance.now();
  readonly #claims: CollectorClaims;
  readonly #examined: Tally = { blobs: 0, bytes: 0 };
  readonly #kept: Tally = { blobs: 0, bytes: 0 };
  readonly #deleted: Tally = { blobs: 0, bytes: 0 };
  readonly #orphans: Tally = { blobs: 0, bytes: 0 };
  readonly #errors: string[] = [];
  #errorCount = 0;
  staging: SweptStaging | undefined;

  constructor(deps: GcDeps, trigger: GcReport['trigger'], graceMs: number, dryRun: boolean) {
    this.#deps = deps;
    this.#trigger = trigger;
    this.#graceMs = graceMs;
    this.#dryRun = dryRun;
    this.startedAt = deps.clock.now();
    this.#claims = deps.gcClaims;
  }

  examine(size: number): void {
    add(this.#examined, size);
  }

  /** Counts a kept blob; answers false so it can drop the blob from a filter. */
  keep(size: number): false {
    add(this.#kept, size);
    return false;
  }

  /**
   * live -> deleting (conditional on the generation seen in the snapshot) -> bytes -> gone, for
   * a chunk of blobs at a time: the transitions of a chunk are issued together (an adapter may
   * commit them as one group), then the bytes go with bounded concurrency, then the records.
   */
  async sweep(records: BlobRecord[], concurrency: number): Promise<void> {
    const { catalog } = this.#deps;
    if (this.#dryRun) {
      for (const record of records) add(this.#deleted, record.size);
      return;
    }
    // Another collector of this process may hold a digest: it is being deleted right now.
    const mine = records.filter((record) => this.#lock(record.digest) || this.keep(record.size));
    const begun = await Promise.all(
      mine.map((record) =>
        catalog
          .beginBlobDeletion(record.digest, record.generation)
          .catch((error: unknown) => error),
      ),
    );
    const won: BlobRecord[] = [];
    mine.forEach((record, i) => {
      const outcome = begun[i];
      if (outcome === true) {
        won.push(record);
        return;
      }
      // false: a writer touched it after the snapshot (or another collector took it).
      if (outcome === false) this.keep(record.size);
      else this.#fail(record.digest, record.size, outcome);
      this.#claims.release(record.digest);
    });
    const removed: { record: BlobRecord; bytes: number }[] = [];
    await forEachLimited(won, concurrency, async (record) => {
      try {
        removed.push({ record, bytes: await this.#removeBytes(record.digest) });
      } catch (error) {
        // Left in deleting: the next run resumes it; writers wait for it meanwhile.
        this.#fail(record.digest, record.size, error);
        this.#claims.release(record.digest);
      }
    });
    const finished = await Promise.all(
      removed.map(({ record }) =>
        catalog.finishBlobDeletion(record.digest).catch((error: unknown) => error ?? 'failed'),
      ),
    );
    removed.forEach(({ record, bytes }, i) => {
      if (finished[i] === undefined) add(this.#deleted, bytes);
      else this.#fail(record.digest, record.size, finished[i]);
      this.#claims.release(record.digest);
    });
  }

  /** A record some collector left in deleting (crashed, or still running elsewhere). */
  async resume(record: BlobRecord): Promise<void> {
    const { catalog } = this.#deps;
    if (this.#dryRun) {
      add(this.#deleted, record.size);
      return;
    }
    if (!this.#lock(record.digest)) {
      this.keep(record.size);
      return;
    }
    try {
      // Finished meanwhile (and perhaps re-added by a writer): its bytes are not ours to delete.
      const current = await catalog.getBlob(record.digest);
      if (current?.state !== 'deleting') {
        this.keep(record.size);
        return;
      }
      add(this.#deleted, await this.#removeBytes(record.digest));
      await catalog.finishBlobDeletion(record.digest);
    } catch (error) {
      this.#fail(record.digest, record.size, error);
    } finally {
      this.#claims.release(record.digest);
    }
  }

  /**
   * Files without a record: claim them (so writers wait), delete them, drop the claims; a
   * chunk at a time like `sweep`.
   */
  async claimOrphans(files: OrphanFile[], concurrency: number): Promise<void> {
    const { catalog, clock } = this.#deps;
    const mine: OrphanFile[] = [];
    for (const file of files) {
      if (file.old && this.#lock(file.digest)) mine.push(file);
      else this.keep(file.size);
    }
    try {
      // Recorded after the snapshot (a writer finished): not an orphan.
      const records = await Promise.all(
        mine.map((file) => catalog.getBlob(file.digest).catch((e: unknown) => e ?? 'failed')),
      );
      const unrecorded = mine.filter((file, i) => {
        if (records[i] === undefined) return true;
        if (records[i] instanceof Error) this.#fail(file.digest, file.size, records[i]);
        else this.keep(file.size);
        return false;
      });
      if (this.#dryRun) {
        for (const file of unrecorded) {
          add(this.#deleted, file.size);
          add(this.#orphans, file.size);
        }
        return;
      }
      const claims = await Promise.all(
        unrecorded.map((file) =>
          catalog.claimOrphanBlob(file.digest, file.size, clock.now()).catch((e: unknown) => e),
        ),
      );
      const claimed: OrphanFile[] = [];
      unrecorded.forEach((file, i) => {
        if (claims[i] === true) claimed.push(file);
        else if (claims[i] === false) this.keep(file.size);
        else this.#fail(file.digest, file.size, claims[i]);
      });
      const removed: { file: OrphanFile; bytes: number }[] = [];
      await forEachLimited(claimed, concurrency, async (file) => {
        try {
          removed.push({ file, bytes: await this.#removeBytes(file.digest) });
        } catch (error) {
          this.#fail(file.digest, file.size, error);
        }
      });
      const finished = await Promise.all(
        removed.map(({ file }) =>
          catalog.finishBlobDeletion(file.digest).catch((e: unknown) => e ?? 'failed'),
        ),
      );
      removed.forEach(({ file, bytes }, i) => {
        if (finished[i] !== undefined) {
          this.#fail(file.digest, file.size, finished[i]);
          return;
        }
        add(this.#deleted, bytes);
        add(this.#orphans, bytes);
      });
    } finally {
      for (const file of mine) this.#claims.release(file.digest);
    }
  }

  #lock(digest: Digest): boolean {
    return this.#claims.claim(digest);
  }

  /** Deletes the bytes and answers how many left the store (0 when they were gone already). */
  async #removeBytes(digest: Digest): Promise<number> {
    const stored = await this.#deps.blobs.stat(digest);
    await this.#deps.blobs.delete(digest);
    return stored?.size ?? 0;
  }

  #fail(digest: Digest, size: number, error: unknown): void {
    this.keep(size);
    this.#errorCount++;
    if (this.#errors.length < MAX_REPORTED_ERRORS) {
      this.#errors.push(`${digest}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  async finish(): Promise<GcReport> {
    const errors = [...this.#errors];
    if (this.#errorCount > errors.length) {
      errors.push(`... and ${this.#errorCount - errors.length} more errors`);
    }
    const report: GcReport = {
      id: randomUUID(),
      trigger: this.#trigger,
      dryRun: this.#dryRun,
      graceMs: this.#graceMs,
      startedAt: this.startedAt,
      durationMs: Math.round(performance.now() - this.#started),
      examined: { ...this.#examined },
      kept: { ...this.#kept },
      deleted: { ...this.#deleted },
      orphans: { ...this.#orphans },
      ...(this.staging && { staging: { ...this.staging } }),
      errors,
    };
    if (!this.#dryRun) await this.#deps.gcReports.putGcReport(report);
    this.#deps.metrics?.collected(report);
    return report;
  }
}

function add(tally: Tally, bytes: number): void {
  tally.blobs++;
  tally.bytes += bytes;
}

/** Runs `work` over the items with at most `limit` at once; pulls lazily from async sources. */
async function forEachLimited<T>(
  items: Iterable<T> | AsyncIterable<T>,
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const iterator =
    Symbol.asyncIterator in items
      ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
      : (items as Iterable<T>)[Symbol.iterator]();
  // One shared iterator: workers take the next item as they become free.
  const worker = async () => {
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      await work(next.value);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
}

async function* chunks<T>(items: AsyncIterable<T>, size: number): AsyncIterable<T[]> {
  let chunk: T[] = [];
  for await (const item of items) {
    chunk.push(item);
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

export interface GcSchedule {
  /** Stops the schedule and waits for a run in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `run` every `intervalMs`, measured from the end of the previous run, so runs never
 * overlap however long one takes. A failing run is reported to `onError` and the schedule goes on.
 */
export function startGcSchedule(options: {
  intervalMs: number;
  run: () => Promise<unknown>;
  onError?: (error: unknown) => void;
}): GcSchedule {
  if (!Number.isFinite(options.intervalMs) || options.intervalMs <= 0) {
    throw new RangeError(`GC interval must be a positive number of ms, got ${options.intervalMs}`);
  }
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(tick, options.intervalMs);
    // The schedule alone must not keep a process alive (e.g. a CLI that is done).
    timer.unref();
  };
  const tick = () => {
    timer = undefined;
    current = (async () => {
      try {
        await options.run();
      } catch (error) {
        options.onError?.(error);
      }
    })().finally(() => {
      current = undefined;
      schedule();
    });
  };
  schedule();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await current;
    },
  };
}
