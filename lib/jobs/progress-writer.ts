/**
 * Writes a running job's progress to the catalog: a layer changing state or a status line is
 * written within CHANGE_WRITE_MS (at once when the last write is older), a download's byte
 * counts at most about once a second, and at least every HEARTBEAT_MS so the lease stays ahead
 * of a quiet download. One write is in flight at a time; messages arriving meanwhile go with
 * the next one.
 *
 * Why changes wait up to CHANGE_WRITE_MS: followers elsewhere read the catalog every
 * FOLLOW_POLL_MS (500 ms) and followers here read memory, so writing faster shows nobody
 * anything sooner. A small image's pull makes a dozen changes in a few milliseconds; each one
 * written on its own cost a synchronous fsync on SQLite (and an UpdateItem on DynamoDB), and
 * with a warm list of hundreds those writes, not the pulls, held the server's event loop.
 */

import type { Clock } from '../ports/clock.ts';
import type { JobMessage, JobProgress, JobStore } from '../ports/job-store.ts';
import { ProgressLog } from './progress-log.ts';

export const WRITE_INTERVAL_MS = 1_000;
/** Half of FOLLOW_POLL_MS (lib/jobs/jobs.ts): a poller sees a change at most one poll late. */
export const CHANGE_WRITE_MS = 250;

export interface ProgressWriterOptions {
  jobStore: JobStore;
  clock: Clock;
  jobId: string;
  owner: string;
  leaseMs: number;
  start?: JobProgress;
  /** Told after every message (JobSignals wakes the followers in this process). */
  onChange?: () => void;
}

export class ProgressWriter {
  readonly #options: ProgressWriterOptions;
  readonly #log: ProgressLog;
  readonly #heartbeat: NodeJS.Timeout;
  #timer: NodeJS.Timeout | undefined;
  /** When #timer fires (performance.now()). */
  #timerAt = 0;
  #inFlight: Promise<void> | undefined;
  #pending = false;
  #lastWrite = 0;
  /** Another worker took the job over: stop writing, the finish will be refused too. */
  lost = false;

  constructor(options: ProgressWriterOptions) {
    this.#options = options;
    this.#log = new ProgressLog(options.start);
    this.#heartbeat = setInterval(() => this.#request(), Math.max(1_000, options.leaseMs / 3));
    this.#heartbeat.unref();
  }

  readonly onMessage = (message: JobMessage): void => {
    const changed = this.#log.add(message);
    this.#options.onChange?.();
    this.#writeWithin(changed ? CHANGE_WRITE_MS : WRITE_INTERVAL_MS);
  };

  /** Writes now if the last write is `ms` old, else no later than `ms` after it. */
  #writeWithin(ms: number): void {
    const at = this.#lastWrite + ms;
    const now = performance.now();
    if (at <= now) {
      this.#request();
    } else if (!this.#timer || at < this.#timerAt) {
      clearTimeout(this.#timer);
      this.#timerAt = at;
      this.#timer = setTimeout(() => this.#request(), at - now);
      this.#timer.unref();
    }
  }

  progress(): JobProgress {
    return this.#log.snapshot();
  }

  /** Stops the timers and waits for the write in flight; the finish carries the last state. */
  async stop(): Promise<void> {
    clearInterval(this.#heartbeat);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = false;
    await this.#inFlight;
  }

  #request(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.lost) return;
    if (this.#inFlight) {
      this.#pending = true;
      return;
    }
    this.#inFlight = this.#write().finally(() => {
      this.#inFlight = undefined;
      if (this.#pending) {
        this.#pending = false;
        this.#request();
      }
    });
  }

  async #write(): Promise<void> {
    const { jobStore, clock, jobId, owner, leaseMs } = this.#options;
    this.#lastWrite = performance.now();
    const now = clock.now();
    try {
      const held = await jobStore.recordJobProgress(
        jobId,
        { owner, now, until: now + leaseMs },
        this.#log.snapshot(),
      );
      if (!held) this.lost = true;
    } catch (error) {
      // Progress is best effort: the job goes on, the next write or the finish catches up.
      console.error(`recording progress of job ${jobId}:`, error);
    }
  }
}
