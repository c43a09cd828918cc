import type { JobDispatcher } from '../ports/job-dispatcher.ts';

/**
 * Runs jobs in this process, in the background of the request that started them: the local
 * server has no time limit, and `serve --backend aws` on a machine of its own has no worker.
 */
export class InProcessDispatcher implements JobDispatcher {
  readonly #run: (jobId: string) => Promise<unknown>;
  readonly #running = new Set<Promise<unknown>>();

  constructor(run: (jobId: string) => Promise<unknown>) {
    this.#run = run;
  }

  async dispatch(jobId: string): Promise<void> {
    const running = this.#run(jobId)
      .catch((error: unknown) => {
        // The runner records failures in the job; this is a catalog that could not be reached.
        console.error(`job ${jobId}:`, error);
      })
      .finally(() => this.#running.delete(running));
    this.#running.add(running);
  }

  /** Resolves when every job started here has ended: before the catalog closes. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running]);
  }
}
