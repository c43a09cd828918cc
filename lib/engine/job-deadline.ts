/**
 * Time left before the front door stops waiting, and what a job's failure looks like as the
 * error a request would have raised: shared by the routes that hand work over to jobs.
 */
import { type ErrorCode, ImageCacheError, STATUS_BY_CODE } from '../errors.ts';
import type { JobError } from '../ports/job-store.ts';

/** Stop following this long before the deadline, so the last line still reaches the client. */
export const HANDOVER_MARGIN_MS = 2_000;

/** Epoch ms (real clock) by which a route must have answered. */
export function answerBy(deadline: number): number {
  return deadline - HANDOVER_MARGIN_MS;
}

export function errorOfJob(error: JobError | undefined): ImageCacheError {
  const code = (error && error.code in STATUS_BY_CODE ? error.code : 'INTERNAL') as ErrorCode;
  return new ImageCacheError(code, error?.message ?? 'the job failed');
}
