/**
 * A save's export to storage (`?redirect=1`, `GET /cache/exports`) behind a front door with a
 * deadline: writing a multi-GB tarball to S3 outlasts API Gateway's 30 s, so an export not in
 * storage yet runs as a job (one per content key, however many clients ask) and this request
 * waits for it. An export that ends in time is answered as the request always did; otherwise
 * 202 with the job and `Location: /cache/jobs/<id>`, and the same request later finds the export.
 */

import { ImageCacheError } from '../errors.ts';
import { jobView } from '../jobs/job-view.ts';
import { type Jobs, startJob } from '../jobs/jobs.ts';
import type { JobRecord } from '../ports/job-store.ts';
import { planExport, type SaveExport, type SaveExports } from '../save/export.ts';
import type { EngineContext } from './context.ts';
import type { HttpRequest, HttpResponse } from './http.ts';
import { errorOfJob, followUntilDeadline, handedOver } from './job-deadline.ts';

/** Seconds a client is told to wait before asking again: a few parts' upload time. */
const RETRY_AFTER_S = 5;

export async function exportThroughJob(
  request: HttpRequest & { deadline: number },
  names: string[],
  context: EngineContext,
  deps: { exports: SaveExports; jobs: Jobs },
  answer: (exported: SaveExport) => HttpResponse,
): Promise<HttpResponse> {
  const { catalog, jobStore, blobs, clock } = context;
  const { exports, jobs } = deps;
  // Resolving is catalog work only: an unknown name is a 404 and a stored export an answer at
  // once, with no job.
  const planned = await planExport({ catalog, blobs, clock }, names);
  const found = await exports.find(planned.key, planned.size);
  if (found) return answer(found);
  const job = await startJob(
    { jobStore, redispatcher: jobs.redispatcher },
    { kind: 'export', key: `export|${planned.key}`, request: { kind: 'export', names } },
  );
  const last = await followUntilDeadline(request, jobStore, jobs, job);
  if (last.status === 'failed') throw errorOfJob(last.error);
  if (last.status === 'succeeded') {
    const exported = await exportOfJob(last, exports);
    if (!exported) {
      throw new ImageCacheError('INTERNAL', `export job ${last.id} ended without its object`);
    }
    return answer(exported);
  }
  return handedOver(last, RETRY_AFTER_S);
}

/**
 * A job as `GET /cache/jobs/{id}` shows it; a succeeded export's result also carries a URL
 * signed now (`url`, `expires`), so a client that waited on the job downloads without asking
 * for the save again. An export the bucket's lifecycle expired since (or would expire before
 * such a URL) shows without one.
 */
export async function viewWithDownload(job: JobRecord, exports: SaveExports | undefined) {
  const view = jobView(job);
  const exported = exports && (await exportOfJob(job, exports));
  return exported ? { ...view, result: { ...view.result, ...exportBody(exported) } } : view;
}

/** The export a succeeded export job wrote, with a URL signed now, if it is still stored. */
async function exportOfJob(job: JobRecord, exports: SaveExports): Promise<SaveExport | undefined> {
  if (job.status !== 'succeeded' || job.result?.kind !== 'export') return undefined;
  return exports.find(job.result.key, job.result.size);
}

/** `GET /cache/exports`'s answer, and what a succeeded export job's view adds to its result. */
export function exportBody(exported: SaveExport) {
  return { url: exported.url, size: exported.size, expires: exported.expires.toISOString() };
}
