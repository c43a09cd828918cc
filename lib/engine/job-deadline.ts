/**
 * Time left before the front door stops waiting, and what a job's failure looks like as the
 * error a request would have raised, following a job until then and the 202 that hands it
 * over: shared by the routes that hand work over to jobs.
 */
import { type ErrorCode, ImageCacheError, STATUS_BY_CODE } from '../errors.ts';
import { jobPath, jobView } from '../jobs/job-view.ts';
import { followJob, type Jobs } from '../jobs/jobs.ts';
import type { JobError, JobRecord, JobStore } from '../ports/job-store.ts';
import { type HttpRequest, type HttpResponse, json } from './http.ts';

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

/**
 * Follows `job` until it ends or the request's deadline nears, and gives up with the client
 * (its `signal`); the job as last seen, so the caller answers its result or hands it over.
 */
export async function followUntilDeadline(
  request: HttpRequest & { deadline: number },
  jobStore: JobStore,
  jobs: Jobs,
  job: JobRecord,
): Promise<JobRecord> {
  return (
    (await followJob(jobStore, job.id, {
      until: answerBy(request.deadline),
      signals: jobs.signals,
      redispatcher: jobs.redispatcher,
      ...(request.signal && { signal: request.signal }),
    })) ?? job
  );
}

/** 202 with the job still running: where to follow it, and when to ask again. */
export function handedOver(job: JobRecord, retryAfterS: number): HttpResponse {
  return json(202, jobView(job), {
    Location: jobPath(job.id),
    'Retry-After': String(retryAfterS),
    'Cache-Control': 'no-store',
  });
}
