/**
 * `POST /cache/loads/{id}/commit` behind a front door with a deadline: the load runs as a job
 * (one per upload) and this request waits for it. A load that ends in time answers as the
 * commit always did; otherwise 202 with the job and `Location: /cache/jobs/<id>` to wait on.
 */

import { jobPath, jobView } from '../jobs/job-view.ts';
import { type Jobs, startJob } from '../jobs/jobs.ts';
import type { EngineContext } from './context.ts';
import { type HttpRequest, type HttpResponse, json } from './http.ts';
import { errorOfJob, followUntilDeadline } from './job-deadline.ts';
import { loadedResponse } from './load-answers.ts';

export async function loadThroughJob(
  request: HttpRequest & { deadline: number },
  context: EngineContext,
  jobs: Jobs,
  /** A completed upload (PresignedUploads.completeUpload). */
  uploadId: string,
): Promise<HttpResponse> {
  const job = await startJob(
    { jobStore: context.jobStore, redispatcher: jobs.redispatcher },
    {
      kind: 'load',
      key: `load|${uploadId}`,
      request: { kind: 'load', uploadId },
    },
  );
  const last = await followUntilDeadline(request, context.jobStore, jobs, job);
  if (last.status === 'succeeded' && last.result?.kind === 'load') {
    return loadedResponse(last.result.messages);
  }
  if (last.status === 'failed') throw errorOfJob(last.error);
  return json(202, jobView(last), { Location: jobPath(last.id) });
}
