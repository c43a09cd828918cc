/**
 * The worker function's run of a dispatched job. Lambda retries a failed asynchronous
 * invocation about a minute later, and followers dispatch a job again once its lease has run
 * out; a worker that died (a crash, its timeout) still holds its lease (last write + LEASE_MS)
 * when the retry arrives, so a plain claim fails, and with nobody following the job nothing
 * would start it again. So a claim that meets another owner's live lease waits until just after
 * the lease ends, when the function has the time, and tries once more.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../ports/clock.ts';
import type { JobRecord, JobStore } from '../ports/job-store.ts';
import { type JobRunner, LEASE_MS } from './runner.ts';

/** Past the lease's end before claiming again: another container's clock may run a little late. */
export const AFTER_LEASE_MS = 1_000;
/** Time the run itself should still have after the wait; with less, leave it to a later start. */
export const MIN_RUN_MS = LEASE_MS;

export interface RunAfterLeaseDeps {
  runner: JobRunner;
  jobStore: JobStore;
  clock: Clock;
  /** Waits `ms` (real time); tests move a manual clock instead. */
  sleep?: (ms: number) => Promise<unknown>;
}

/**
 * Runs the job as JobRunner.run does; when another owner's live lease holds it, waits for that
 * lease to run out (if `remainingMs()` leaves MIN_RUN_MS after the wait) and claims once more.
 * Undefined when the job was not claimed (ended, gone, or its lease still held after the wait).
 */
export async function runAfterLease(
  deps: RunAfterLeaseDeps,
  jobId: string,
  remainingMs: () => number,
): Promise<JobRecord | undefined> {
  const ran = await deps.runner.run(jobId);
  if (ran) return ran;
  const job = await deps.jobStore.getJob(jobId);
  const lease = job?.status === 'running' ? job.lease : undefined;
  if (!lease || lease.owner === deps.runner.owner) return undefined;
  const waitMs = Math.max(0, lease.until - deps.clock.now()) + AFTER_LEASE_MS;
  if (waitMs + MIN_RUN_MS > remainingMs()) return undefined;
  await (deps.sleep ?? sleep)(waitMs);
  return deps.runner.run(jobId);
}
