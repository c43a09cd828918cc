/**
 * Waiting for a background job the server handed a pull, load or save export over to:
 * long-polls `GET /cache/jobs/<id>?wait=` and passes on each progress message not seen before,
 * until the job ends. Each poll stays below API Gateway's 30 s; the server caps it by its deadline anyway.
 * Reading the job also starts it again when its worker died; a job that still does not move
 * for three leases has nobody to run it, and the wait stops rather than hang.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ProgressDiff } from '../jobs/progress-log.ts';
import type {
  JobError,
  JobMessage,
  JobProgress,
  JobResult,
  JobStatus,
} from '../ports/job-store.ts';
import { type ApiClient, ApiError, ConnectionError } from './http.ts';

export interface JobJson {
  id: string;
  url: string;
  status: JobStatus;
  progress: JobProgress;
  /** A succeeded export's result also carries a download URL, signed when the job was read. */
  result?: JobResult & { url?: string };
  error?: JobError;
  /** When the job last changed: a worker writes at least every third of its lease. */
  updatedAt?: string;
}

/** The final line of a pull stream when the server handed the pull over to a job. */
export interface HandoverLine {
  job?: { id: string; url: string };
}

const POLL_WAIT_S = '25';
/** Three leases (LEASE_MS in lib/jobs/runner.ts, not imported: the CLI stays a thin client). */
export const STALLED_AFTER_MS = 3 * 60_000;
/** Failed polls in a row let pass: a gateway's 502/503 or a dropped connection is no verdict. */
export const TRANSIENT_FAILURES = 3;
const RETRY_PAUSE_MS = 1_000;

export interface WaitOptions {
  /** Epoch ms, for the stall; tests move it by hand. */
  now?: () => number;
  /** Pause before polling again after a transient failure. */
  retryPauseMs?: number;
}

export async function waitForJob(
  client: ApiClient,
  url: string,
  onMessage: (message: JobMessage) => void = () => {},
  options: WaitOptions = {},
): Promise<JobJson> {
  const now = options.now ?? Date.now;
  const diff = new ProgressDiff();
  let failures = 0;
  let updatedAt: string | undefined;
  let unchangedSince = now();
  for (;;) {
    let job: JobJson;
    try {
      job = await client.json<JobJson>(url, { query: { wait: POLL_WAIT_S } });
      failures = 0;
    } catch (error) {
      if (!isTransient(error) || ++failures > TRANSIENT_FAILURES) throw error;
      await sleep(options.retryPauseMs ?? RETRY_PAUSE_MS);
      continue;
    }
    for (const message of diff.next(job.progress)) onMessage(message);
    if (job.status === 'succeeded' || job.status === 'failed') return job;
    if (job.updatedAt !== updatedAt) {
      updatedAt = job.updatedAt;
      unchangedSince = now();
    } else if (now() - unchangedSince > STALLED_AFTER_MS) {
      throw new Error(
        `job ${job.id} has not moved for ${Math.round(STALLED_AFTER_MS / 60_000)} minutes ` +
          `(still ${job.status}): its worker seems to be gone. Run the same command again to ` +
          'start it again (what is already stored is kept).',
      );
    }
  }
}

function isTransient(error: unknown): boolean {
  if (error instanceof ConnectionError) return true;
  return error instanceof ApiError && [502, 503, 504].includes(error.status);
}
