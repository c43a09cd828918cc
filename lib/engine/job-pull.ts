/**
 * `POST /images/create` behind a front door with a deadline: the pull runs as a job (one per
 * reference and platform, however many clients ask) and this request follows its progress
 * until it ends or the deadline nears. Then the last line says plainly that the pull goes on,
 * with an errorDetail so `docker pull` exits non-zero instead of pretending the image is there,
 * and where to wait for it.
 */

import { jobPath } from '../jobs/job-view.ts';
import { followJob, type Jobs } from '../jobs/jobs.ts';
import { startPullJob } from '../jobs/pull-job.ts';
import type { Platform, Reference } from '../model.ts';
import type { EngineContext } from './context.ts';
import type { HttpRequest, HttpResponse } from './http.ts';
import { answerBy, errorOfJob } from './job-deadline.ts';
import { PullHandedOver, streamPull } from './pull-stream.ts';

export async function pullThroughJob(
  request: HttpRequest & { deadline: number },
  ref: Reference,
  platform: Platform | undefined,
  context: EngineContext,
  jobs: Jobs,
): Promise<HttpResponse> {
  const job = await startPullJob(context, jobs, ref, platform, 'engine');
  return streamPull(async (onProgress, closed) => {
    const last = await followJob(context.jobStore, job.id, {
      until: answerBy(request.deadline),
      onMessage: onProgress,
      signals: jobs.signals,
      redispatcher: jobs.redispatcher,
      // Nobody reads the progress any more; the job goes on.
      signal: closed,
    });
    if (last?.status === 'succeeded') return;
    if (last?.status === 'failed') throw errorOfJob(last.error);
    throw new PullHandedOver(handoverLine(job.id, request));
  });
}

function handoverLine(id: string, request: HttpRequest) {
  const url = jobPath(id);
  const message =
    `the pull continues in the background as job ${id}: run the same docker pull again to ` +
    `follow it (it joins the same job), or wait for it with curl -H 'Authorization: Bearer ` +
    `<token>' '${endpointOf(request)}${url}?wait=20'`;
  return { errorDetail: { message }, error: message, job: { id, url } };
}

/** The address the client used, as far as the front door tells it. */
function endpointOf(request: HttpRequest): string {
  const host = request.headers.host ?? request.headers.Host;
  if (!host) return 'https://<endpoint>';
  const proto = request.headers['x-forwarded-proto'] ?? 'https';
  return `${proto}://${host}`;
}
