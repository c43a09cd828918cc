/**
 * Starting and following jobs, for the routes: create-or-join by single-flight key (and
 * dispatch when the job is new), and a follower that hands on each new progress message until
 * the job ends or time is up: from memory when the job runs in this process (JobSignals), else
 * by polling the catalog. Whoever joins or reads a job that looks abandoned (its dispatch lost,
 * or its worker dead and its lease run out) dispatches it again: nothing else would.
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
/** Followers read a job every FOLLOW_POLL_MS; one dispatch per job this often is enough. */
const REDISPATCH_EVERY_MS = 10_000;
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
  if (created) await deps.dispatcher.dispatch(job.id);
  else await redispatchIfAbandoned(deps, job);
  return job;
}

/** What dispatching a job again takes: the clock its leases are read against. */
export interface Redispatch {
  clock: Clock;
  dispatcher: JobDispatcher;
}

/** When each job was last dispatched again, per dispatcher (one per composition). */
const redispatched = new WeakMap<JobDispatcher, Map<string, number>>();

/**
 * Dispatches the job again when it looks abandoned, at most once per REDISPATCH_EVERY_MS per job
 * in this process, however many followers read it. Best effort: a dispatch that fails is logged
 * and the next read after the interval tries again. Answers whether it dispatched.
 */
export async function redispatchIfAbandoned(deps: Redispatch, job: JobRecord): Promise<boolean> {
  const now = deps.clock.now();
  if (!looksAbandoned(job, now)) return false;
  let sent = redispatched.get(deps.dispatcher);
  if (!sent) {
    sent = new Map();
    redispatched.set(deps.dispatcher, sent);
  }
  const last = sent.get(job.id);
  if (last !== undefined && now - last < REDISPATCH_EVERY_MS) return false;
  for (const [id, at] of sent) if (now - at >= REDISPATCH_EVERY_MS) sent.delete(id);
  sent.set(job.id, now);
  try {
    await deps.dispatcher.dispatch(job.id);
  } catch (error) {
    console.error(`job ${job.id}: dispatching it again failed:`, error);
    return false;
  }
  return true;
}

/**
 * Polls the job about every FOLLOW_POLL_MS (or follows it in memory when it runs here), passing each message not passed before to
 * `onMessage`, until it ends, `until` (epoch ms of the real clock) passes or `signal` aborts (the
 * client is gone). With `redispatch`, each read dispatches the job again if it looks abandoned.
 * Answers the job as last read; NotFound is the caller's business (the job was read before).
 */
export async function followJob(
  catalog: Catalog,
  jobId: string,
  options: {
    until: number;
    onMessage?: (message: JobMessage) => void;
    pollMs?: number;
    signals?: JobSignals;
    redispatch?: Redispatch;
    signal?: AbortSignal;
  },
): Promise<JobRecord | undefined> {
  const diff = new ProgressDiff();
  const { signals, signal } = options;
  let job: JobRecord | undefined;
  for (;;) {
    if (signal?.aborted) return job ?? catalog.getJob(jobId);
    // A job running in this process is followed in memory, message by message.
    const live = signals?.live(jobId);
    if (live) {
      for (const message of diff.next(live())) options.onMessage?.(message);
      const left = options.until - Date.now();
      if (left <= 0) return catalog.getJob(jobId);
      await signals!.wait(jobId, Math.min(options.pollMs ?? FOLLOW_POLL_MS, left), signal);
      continue;
    }
    job = await catalog.getJob(jobId);
    if (!job) return undefined;
    for (const message of diff.next(job.progress)) options.onMessage?.(message);
    if (isEnded(job)) return job;
    if (options.redispatch) await redispatchIfAbandoned(options.redispatch, job);
    const left = options.until - Date.now();
    if (left <= 0) return job;
    const pause = Math.min(options.pollMs ?? FOLLOW_POLL_MS, left);
    await (signals
      ? signals.wait(jobId, pause, signal)
      : sleep(pause, undefined, { signal }).catch(() => {}));
  }
}
