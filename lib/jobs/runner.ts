/**
 * Runs one job to its end in this process: claim it (conditional on its status and lease),
 * run the pull, load or save export with progress going to the catalog, then record the result
 * or the error. Whoever starts a job only dispatches its id; the runner reads everything else from the
 * record, so the in-process and the Lambda dispatchers run exactly the same code.
 */
import { randomBytes } from 'node:crypto';
import { errorBody, ImageCacheError, NotFoundError } from '../errors.ts';
import { loadUploadedArchive } from '../load/from-upload.ts';
import { parsePlatform } from '../manifest.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import type {
  Catalog,
  JobError,
  JobMessage,
  JobOutcome,
  JobRecord,
  JobResult,
} from '../ports/catalog.ts';
import type { Clock } from '../ports/clock.ts';
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

export interface JobRunnerDeps {
  catalog: Catalog;
  blobs: BlobStore;
  pulls: PullService;
  clock: Clock;
  /** Save through storage, where the backend has it: what export jobs write to. */
  exports?: SaveExports;
  /** Wakes followers in this process after each write. */
  signals?: JobSignals;
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
    const { catalog, clock, signals } = this.#deps;
    const now = clock.now();
    const job = await catalog.claimJob(jobId, { owner: this.owner, now, until: now + LEASE_MS });
    if (!job) return undefined;
    const writer = new ProgressWriter({
      catalog,
      clock,
      jobId,
      owner: this.owner,
      leaseMs: LEASE_MS,
      start: job.progress,
      onChange: () => signals?.notify(jobId),
    });
    signals?.started(jobId, () => writer.progress());
    let outcome: JobOutcome;
    try {
      outcome = { status: 'succeeded', result: await this.#execute(job, writer.onMessage) };
    } catch (error) {
      if (!(error instanceof ImageCacheError)) console.error(`job ${jobId} failed:`, error);
      outcome = { status: 'failed', error: jobError(error) };
    }
    await writer.stop();
    const end = clock.now();
    try {
      await catalog.finishJob(jobId, this.owner, {
        ...outcome,
        progress: writer.progress(),
        now: end,
        expiresAt: end + ENDED_JOB_TTL_MS,
      });
    } finally {
      signals?.ended(jobId);
    }
    return catalog.getJob(jobId);
  }

  async #execute(job: JobRecord, onMessage: (m: JobMessage) => void): Promise<JobResult> {
    const request = job.request;
    if (request.kind === 'pull') {
      const ref = parseReference(request.reference);
      const platform = request.platform ? parsePlatform(request.platform) : undefined;
      const pulled = await this.#deps.pulls.pull(ref, { platform, onProgress: onMessage });
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
    const { catalog, blobs, clock } = this.#deps;
    const loaded = await loadUploadedArchive(
      uploads,
      request.uploadId,
      undefined,
      { catalog, blobs, clock },
      (bytes) =>
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

/** The error as a request would have answered it: its message, status and code. */
function jobError(error: unknown): JobError {
  const { status, body } = errorBody(error);
  const code = error instanceof ImageCacheError ? error.code : 'INTERNAL';
  return { message: body.message, status, code };
}
