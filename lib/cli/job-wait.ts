/**
 * Waiting for a background job the server handed a pull, load or save export over to:
 * long-polls `GET /cache/jobs/<id>?wait=` and passes on each progress message not seen before,
 * until the job ends. Each poll stays below API Gateway's 30 s; the server caps it by its deadline anyway.
 */
import { ProgressDiff } from '../jobs/progress-log.ts';
import type { JobError, JobMessage, JobProgress, JobResult, JobStatus } from '../ports/catalog.ts';
import type { ApiClient } from './http.ts';

export interface JobJson {
  id: string;
  url: string;
  status: JobStatus;
  progress: JobProgress;
  /** A succeeded export's result also carries a download URL, signed when the job was read. */
  result?: JobResult & { url?: string };
  error?: JobError;
}

/** The final line of a pull stream when the server handed the pull over to a job. */
export interface HandoverLine {
  job?: { id: string; url: string };
}

const POLL_WAIT_S = '25';

export async function waitForJob(
  client: ApiClient,
  url: string,
  onMessage: (message: JobMessage) => void = () => {},
): Promise<JobJson> {
  const diff = new ProgressDiff();
  for (;;) {
    const job = await client.json<JobJson>(url, { query: { wait: POLL_WAIT_S } });
    for (const message of diff.next(job.progress)) onMessage(message);
    if (job.status === 'succeeded' || job.status === 'failed') return job;
  }
}
