/**
 * A job delivered by the job queue: run it, then say whether its message may go. The message
 * is what makes a job durable: while it is in the queue, some worker will run the job, even when
 * the one that had it crashed or hit its timeout (the message reappears after the queue's
 * visibility timeout, which is longer than the worker's). So a message is acknowledged exactly
 * when nothing is left to do for it:
 * - the job ended, succeeded or failed: a failure of its own (an unknown image, a bad archive)
 *   is recorded by the runner and is no reason to try again;
 * - the job is gone (its record expired): nobody can follow it any more.
 * Anything else (queued, or running under a lease this worker could not take in the time it had)
 * is kept for a later delivery; a job that never ends ends in the dead-letter queue.
 */
import type { JobRecord } from '../ports/job-store.ts';
import { type RunAfterLeaseDeps, runAfterLease } from './run-after-lease.ts';

export type QueuedJobOutcome =
  /** Delete the message: the job ended or is gone. */
  | { acknowledge: true; job?: JobRecord }
  /** Leave the message to be delivered again after its visibility timeout. */
  | { acknowledge: false; job: JobRecord };

/**
 * Runs the job as the worker runs any dispatched job (waiting out a dead worker's lease within
 * `remainingMs`), then reads where it stands. Throws when the catalog cannot be reached: that
 * too leaves the message for later.
 */
export async function runQueuedJob(
  deps: RunAfterLeaseDeps,
  jobId: string,
  remainingMs: () => number,
): Promise<QueuedJobOutcome> {
  // The runner answers the job as it read it after the end; not claimed, as it is now.
  const job =
    (await runAfterLease(deps, jobId, remainingMs)) ?? (await deps.jobStore.getJob(jobId));
  if (!job) return { acknowledge: true };
  if (job.status === 'succeeded' || job.status === 'failed') return { acknowledge: true, job };
  return { acknowledge: false, job };
}
