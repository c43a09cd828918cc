/**
 * Starting and following jobs, for the routes: create-or-join by single-flight key (and
 * dispatch when the job is new), and a follower that hands on each new progress message until
 * the job ends or time is up: from memory when the job runs in this process (JobSignals), else
 * by polling the catalog. Whoever joins or reads a job that looks abandoned (its dispatch lost,
 * or its worker dead and its lease run out) dispatches it again: nothing else would.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../ports/clock.ts';
import type { JobDispatcher } from '../ports/job-dispatcher.ts';
import type { JobKind, JobMessage, JobRecord, JobRequest, JobStore } from '../ports/job-store.ts';
import type { JobSignals } from './job-signals.ts';
import { ProgressDiff } from './progress-log.ts';
import type { JobRunner } from './runner.ts';

/** What a context offers when it can run jobs. */
export interface Jobs {
  dispatcher: JobDispatcher;
  /** Sends abandoned jobs again (owns what it sent, so one per composition). */
  redispatcher: Redispatcher;
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
  deps: { jobStore: JobStore; redispatcher: Redispatcher },
  spec: { kind: JobKind; key: string; request: JobRequest },
): Promise<JobRecord> {
  const { dispatcher, clock } = deps.redispatcher;
  const now = clock.now();
  const { job, created } = await deps.jobStore.createOrJoinJob({
    id: randomBytes(16).toString('hex'),
    ...spec,
    now,
    expiresAt: now + UNENDED_JOB_TTL_MS,
  });
  if (created) await dispatcher.dispatch(job.id);
  else await deps.redispatcher.ifAbandoned(job);
  return job;
}

/**
 * Dispatches a job again when it looks abandoned, at most once per REDISPATCH_EVERY_MS per job
 * however many followers read it. One per composition (it remembers what it sent), so every
 * route of a process shares it.
 */
export class Redispatcher {
  readonly dispatcher: JobDispatcher;
  readonly clock: Clock;
  /** Job id -> when it was last dispatched again. */
  readonly #sent = new Map<string, number>();

  constructor(dispatcher: JobDispatcher, clock: Clock) {
    this.dispatcher = dispatcher;
    this.clock = clock;
  }

  /**
   * Best effort: a dispatch that fails is logged and the next read after the interval tries
   * again. Answers whether it dispatched.
   */
  async ifAbandoned(job: JobRecord): Promise<boolean> {
    const now = this.clock.now();
    if (!looksAbandoned(job, now)) return false;
    const last = this.#sent.get(job.id);
    if (last !== undefined && now - last < REDISPATCH_EVERY_MS) return false;
    for (const [id, at] of this.#sent) if (now - at >= REDISPATCH_EVERY_MS) this.#sent.delete(id);
    this.#sent.set(job.id, now);
    try {
      await this.dispatcher.dispatch(job.id);
    } catch (error) {
      console.error(`job ${job.id}: dispatching it again failed:`, error);
      return false;
    }
    return true;
  }
}

/**
 * Polls the job about every FOLLOW_POLL_MS (or follows it in memory when it runs here), passing each message not passed before to
 * `onMessage`, until it ends, `until` (epoch ms of the real clock) passes or `signal` aborts (the
 * client is gone). With `redispatcher`, each read dispatches the job again if it looks abandoned.
 * Answers the job as last read; NotFound is the caller's business (the job was read before).
 */
export async function followJob(
  jobStore: JobStore,
  jobId: string,
  options: {
    until: number;
    onMessage?: (message: JobMessage) => void;
    pollMs?: number;
    signals?: JobSignals;
    redispatcher?: Redispatcher;
    signal?: AbortSignal;
  },
): Promise<JobRecord | undefined> {
  const diff = new ProgressDiff();
  const { signals, signal } = options;
  let job: JobRecord | undefined;
  for (;;) {
    if (signal?.aborted) return job ?? jobStore.getJob(jobId);
    // A job running in this process is followed in memory, message by message.
    const live = signals?.live(jobId);
    if (live) {
      for (const message of diff.next(live())) options.onMessage?.(message);
      const left = options.until - Date.now();
      if (left <= 0) return jobStore.getJob(jobId);
      await signals!.wait(jobId, Math.min(options.pollMs ?? FOLLOW_POLL_MS, left), signal);
      continue;
    }
    job = await jobStore.getJob(jobId);
    if (!job) return undefined;
    for (const message of diff.next(job.progress)) options.onMessage?.(message);
    if (isEnded(job)) return job;
    await options.redispatcher?.ifAbandoned(job);
    const left = options.until - Date.now();
    if (left <= 0) return job;
    const pause = Math.min(options.pollMs ?? FOLLOW_POLL_MS, left);
    await (signals
      ? signals.wait(jobId, pause, signal)
      : sleep(pause, undefined, { signal }).catch(() => {}));
  }
}
