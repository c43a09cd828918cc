import type { JobDispatcher } from '../ports/job-dispatcher.ts';

/**
 * How many jobs one process runs at once. A warm list of hundreds of images, or a watch pass
 * that finds a hundred tags moved, would otherwise start every pull together: memory grows with
 * the list and each pull's layers crawl. The rest wait here, still `queued` in the job store.
 */
export const JOBS_AT_ONCE = 8;

/**
 * Runs jobs in this process, in the background of the request that started them: the local
 * server has no time limit, and `serve --backend aws` on a machine of its own has no worker.
 * No job waits for another job (only requests follow jobs), so a bound cannot deadlock.
 */
export class InProcessDispatcher implements JobDispatcher {
  readonly #run: (jobId: string) => Promise<unknown>;
  readonly #limit: number;
  readonly #running = new Map<string, Promise<unknown>>();
  /** Waiting job ids in dispatch order; a Set, so a job sent again (redispatch) waits once. */
  readonly #waiting = new Set<string>();

  constructor(run: (jobId: string) => Promise<unknown>, limit = JOBS_AT_ONCE) {
    this.#run = run;
    this.#limit = limit;
  }

  async dispatch(jobId: string): Promise<void> {
    // Sent again while it waits or runs here (the redispatcher saw it still queued): one run.
    if (this.#running.has(jobId) || this.#waiting.has(jobId)) return;
    this.#waiting.add(jobId);
    this.#startWaiting();
  }

  /** How many jobs run and wait here (for tests and the bench). */
  get load(): { running: number; waiting: number } {
    return { running: this.#running.size, waiting: this.#waiting.size };
  }

  /** Resolves when every job sent here has ended, the waiting ones too: before the catalog closes. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.values()]);
  }

  #startWaiting(): void {
    for (const jobId of this.#waiting) {
      if (this.#running.size >= this.#limit) return;
      this.#waiting.delete(jobId);
      const running = this.#run(jobId)
        .catch((error: unknown) => {
          // The runner records failures in the job; this is a catalog that could not be reached.
          console.error(`job ${jobId}:`, error);
        })
        .finally(() => {
          this.#running.delete(jobId);
          this.#startWaiting();
        });
      this.#running.set(jobId, running);
    }
  }
}
