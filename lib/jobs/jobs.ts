/**
 * Starting and following jobs, for the routes: create-or-join by single-flight key (and
 * dispatch when the job is new, or when the one joined looks abandoned), and a follower that
 * hands on each new progress message until the job ends or time is up: from memory when the
 * job runs in this process (JobSignals), else by polling the catalog.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Catalog, JobKind, JobMessage, JobRecord, JobRequest } from '../ports/catalog.ts';
import type { Clock } from '../ports/clock.ts';
import type { JobDispatcher } from '../ports/job-dispatcher.ts';
import type { JobSignals } from './job-signals.ts';
import { ProgressDiff } from './progress-log.ts';
import type { JobRunner } from './runner.ts';

/** What a context offers when it can run jobs. */
export interface Jobs {
  dispatcher: JobDispatcher;
  runner: JobRunner;
  /** What the runner here tells its local followers; jobs run elsewhere are polled. */
  signals: JobSignals;
}

/** A queued job nobody claimed for this long lost its dispatch (a failed invoke): send again. */
const UNCLAIMED_MS = 30_000;
/** A job that never runs (every dispatch lost) still leaves the table in the end. */
const UNENDED_JOB_TTL_MS = 7 * 24 * 3600_000;
export const FOLLOW_POLL_MS = 500;

export function isEnded(job: JobRecord): boolean {
  return job.status === 'succeeded' || job.status === 'failed';
}

function looksAbandoned(job: JobRecord, now: number): boolean {
  if (job.status === 'queued') return now - job.updatedAt > UNCLAIMED_MS;
  return job.status === 'running' && (job.lease?.until ?? 0) < now;
}

export async function startJob(
  deps: { catalog: Catalog; clock: Clock; dispatcher: JobDispatcher },
  spec: { kind: JobKind; key: string; request: JobRequest },
): Promise<JobRecord> {
  const now = deps.clock.now();
  const { job, created } = await deps.catalog.createOrJoinJob({
    id: randomBytes(16).toString('hex'),
    ...spec,
    now,
    expiresAt: now + UNENDED_JOB_TTL_MS,
  });
  if (created || looksAbandoned(job, now)) await deps.dispatcher.dispatch(job.id);
  return job;
}

/**
 * Polls the job about every FOLLOW_POLL_MS (or follows it in memory when it runs here), passing each message not passed before to
 * `onMessage`, until it ends or `until` (epoch ms of the real clock) passes. Answers the job as
 * last read; NotFound is the caller's business (the job was read before).
 */
export async function followJob(
  catalog: Catalog,
  jobId: string,
  options: {
    until: number;
    onMessage?: (message: JobMessage) => void;
    pollMs?: number;
    signals?: JobSignals;
  },
): Promise<JobRecord | undefined> {
  const diff = new ProgressDiff();
  const { signals } = options;
  for (;;) {
    // A job running in this process is followed in memory, message by message.
    const live = signals?.live(jobId);
    if (live) {
      for (const message of diff.next(live())) options.onMessage?.(message);
      const left = options.until - Date.now();
      if (left <= 0) return catalog.getJob(jobId);
      await signals!.wait(jobId, Math.min(options.pollMs ?? FOLLOW_POLL_MS, left));
      continue;
    }
    const job = await catalog.getJob(jobId);
    if (!job) return undefined;
    for (const message of diff.next(job.progress)) options.onMessage?.(message);
    const left = options.until - Date.now();
    if (isEnded(job) || left <= 0) return job;
    const pause = Math.min(options.pollMs ?? FOLLOW_POLL_MS, left);
    await (signals ? signals.wait(jobId, pause) : sleep(pause));
  }
}
