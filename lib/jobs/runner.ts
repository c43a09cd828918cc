/**
 * Runs one job to its end in this process: claim it (conditional on its status and lease),
 * run the pull, load or save export with progress going to the catalog, then record the result
 * or the error. Whoever starts a job only dispatches its id; the runner reads everything else from the
 * record, so the in-process and the Lambda dispatchers run exactly the same code. What a job
 * stores is bounded here, once for every catalog (a DynamoDB item holds 400 KB).
 */

import { randomBytes } from 'node:crypto';
import { errorBody, ImageCacheError, NotFoundError } from '../errors.ts';
import { discardUpload, loadOpenedUpload } from '../load/from-upload.ts';
import type { LoadLimits } from '../load/tar-reader.ts';
import { parsePlatform } from '../manifest.ts';
import type { CacheMetrics } from '../metrics/cache-metrics.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import type { Clock } from '../ports/clock.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import type {
  JobEnd,
  JobError,
  JobMessage,
  JobOutcome,
  JobProgress,
  JobRecord,
  JobResult,
  JobStore,
} from '../ports/job-store.ts';
import { presignedUploadsOf } from '../ports/presigned-uploads.ts';
import type { PullService } from '../pull.ts';
import { parseReference } from '../reference.ts';
import { planExport, type SaveExports, storeExport } from '../save/export.ts';
import type { JobSignals } from './job-signals.ts';
import { ProgressWriter } from './progress-writer.ts';

/** A worker holds a job this long past its last write; a dead one is taken over after it. */
export const LEASE_MS = 60_000;
/** How long an ended job stays readable (the table's TTL removes it after). */
export const ENDED_JOB_TTL_MS = 24 * 3600_000;
/** Lines of a load's result kept in the job, then one counting the rest. */
export const MAX_JOB_LOAD_MESSAGES = 100;
/**
 * Characters kept of a failed job's message and of each line of a load's result: an upstream's
 * error text can be long, and so can a tag an archive names (the registry part has no limit).
 */
export const MAX_JOB_TEXT_CHARS = 1024;
/** Recorded instead when a job's own end could not be (see #finish). */
const UNRECORDED_END: JobError = {
  message: 'the job ended, but its outcome could not be recorded',
  status: 500,
  code: 'INTERNAL',
};

export interface JobRunnerDeps {
  jobStore: JobStore;
  /** What load and export jobs read and commit images through. */
  catalog: ImageCatalog;
  blobs: BlobStore;
  pulls: PullService;
  clock: Clock;
  /** What a load job accepts, as a load in the request would. */
  loadLimits: LoadLimits;
  /** Save through storage, where the backend has it: what export jobs write to. */
  exports?: SaveExports;
  /** Wakes followers in this process after each write. */
  signals?: JobSignals;
  /** Counts the jobs this process runs, by state, for /metrics. */
  metrics?: Pick<CacheMetrics, 'jobStarted' | 'jobEnded'>;
}

export class JobRunner {
  readonly #deps: JobRunnerDeps;
  /** Names this process in leases: random, so two containers never share one. */
  readonly owner = `worker-${randomBytes(8).toString('hex')}`;

  constructor(deps: JobRunnerDeps) {
    this.#deps = deps;
  }

  /** Runs the job; undefined when it is not claimable (ended, or another worker holds it). */
  async run(jobId: string): Promise<JobRecord | undefined> {
    const { jobStore, clock, signals } = this.#deps;
    const now = clock.now();
    const job = await jobStore.claimJob(jobId, { owner: this.owner, now, until: now + LEASE_MS });
    if (!job) return undefined;
    const writer = new ProgressWriter({
      jobStore,
      clock,
      jobId,
      owner: this.owner,
      leaseMs: LEASE_MS,
      start: job.progress,
      onChange: () => signals?.notify(jobId),
    });
    signals?.started(jobId, () => writer.progress());
    this.#deps.metrics?.jobStarted();
    // Work held back until the end is recorded: a load's upload, so a re-run still finds it.
    const afterEnd: (() => Promise<void>)[] = [];
    let outcome: JobOutcome;
    try {
      const result = await this.#execute(job, writer.onMessage, afterEnd);
      outcome = { status: 'succeeded', result: boundedResult(result) };
    } catch (error) {
      if (!(error instanceof ImageCacheError)) console.error(`job ${jobId} failed:`, error);
      outcome = { status: 'failed', error: jobError(error) };
    }
    await writer.stop();
    this.#deps.metrics?.jobEnded(outcome.status);
    let recorded: boolean;
    try {
      recorded = await this.#finish(jobId, outcome, writer.progress());
    } finally {
      signals?.ended(jobId);
    }
    // Not recorded: another worker took the job over and cleans up after its own end.
    if (recorded) for (const task of afterEnd) await task();
    return jobStore.getJob(jobId);
  }

  /**
   * Records the end; if that throws (an item the store refuses, a store out of reach), tries
   * once more with a short failure, so the job does not stay running and hold its key until
   * its lease runs out. Throws when neither could be recorded.
   */
  async #finish(jobId: string, outcome: JobOutcome, progress: JobProgress): Promise<boolean> {
    const { jobStore, clock } = this.#deps;
    const endOf = (ended: JobOutcome): JobEnd => {
      const now = clock.now();
      return { ...ended, progress, now, expiresAt: now + ENDED_JOB_TTL_MS };
    };
    try {
      return await jobStore.finishJob(jobId, this.owner, endOf(outcome));
    } catch (error) {
      console.error(`recording the end of job ${jobId} failed; recording it as failed:`, error);
      try {
        return await jobStore.finishJob(
          jobId,
          this.owner,
          endOf({ status: 'failed', error: UNRECORDED_END }),
        );
      } catch (again) {
        console.error(`recording job ${jobId} as failed failed too:`, again);
        throw error;
      }
    }
  }

  async #execute(
    job: JobRecord,
    onMessage: (m: JobMessage) => void,
    afterEnd: (() => Promise<void>)[],
  ): Promise<JobResult> {
    const request = job.request;
    if (request.kind === 'pull') {
      const ref = parseReference(request.reference);
      const platform = request.platform ? parsePlatform(request.platform) : undefined;
      const pulled = await this.#deps.pulls.pull(ref, {
        platform,
        onProgress: onMessage,
        ...(request.door && { door: request.door }),
      });
      return {
        kind: 'pull',
        imageId: pulled.manifest.image?.configDigest ?? pulled.manifest.digest,
        manifest: pulled.manifest.digest,
        source: pulled.source,
      };
    }
    if (request.kind === 'export') return this.#export(request.names, onMessage);
    const uploads = presignedUploadsOf(this.#deps.blobs);
    if (!uploads) throw new NotFoundError('this backend has no presigned uploads to load from');
    const { catalog, blobs, clock, loadLimits } = this.#deps;
    // As in the request: an upload that does not open stays; once opened, it goes (after the end).
    const body = await uploads.openUpload(request.uploadId, undefined);
    afterEnd.push(() => discardUpload(uploads, request.uploadId));
    const loaded = await loadOpenedUpload(body, { catalog, blobs, clock }, loadLimits, (bytes) =>
      onMessage({ status: 'Loading', id: 'archive', progressDetail: { current: bytes } }),
    );
    return { kind: 'load', messages: loaded.messages };
  }

  /**
   * The names are resolved again here: a tag moved since the route planned gives another
   * export, and the result names the one written, which is what the route answers with.
   */
  async #export(names: string[], onMessage: (m: JobMessage) => void): Promise<JobResult> {
    const { catalog, blobs, clock, exports } = this.#deps;
    if (!exports) throw new NotFoundError('this backend has no save exports to write to');
    const planned = await planExport({ catalog, blobs, clock }, names);
    // Shown as a layer would be: the short key as its id, bytes against the tarball's size.
    const id = planned.key.slice(0, 12);
    const progress = (status: string, current: number) =>
      onMessage({ status, id, progressDetail: { current, total: planned.size } });
    await storeExport(exports, planned, (bytes) => progress('Uploading', bytes));
    progress('Export complete', planned.size);
    return { kind: 'export', key: planned.key, size: planned.size };
  }
}

/** The error as a request would have answered it: its message (bounded), status and code. */
function jobError(error: unknown): JobError {
  const { status, body } = errorBody(error);
  const code = error instanceof ImageCacheError ? error.code : 'INTERNAL';
  return { message: truncated(body.message, MAX_JOB_TEXT_CHARS), status, code };
}

/**
 * A load's lines cut to the first ones, each of them bounded, and a count of the rest (about
 * 100 KB at most); pull and export results are a few digests.
 */
export function boundedResult(result: JobResult): JobResult {
  if (result.kind !== 'load') return result;
  const kept = result.messages
    .slice(0, MAX_JOB_LOAD_MESSAGES)
    .map((line) => truncated(line, MAX_JOB_TEXT_CHARS));
  const more = result.messages.length - kept.length;
  return { kind: 'load', messages: more > 0 ? [...kept, `... and ${more} more images`] : kept };
}

/** At most `max` characters, cut between code points. */
function truncated(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${Array.from(text.slice(0, max)).slice(0, -1).join('')}…`;
}
