/**
 * What a runner tells the followers in its own process: the job's progress as it is in memory,
 * and a signal at every message and at the end. A pull streamed through a job that runs here
 * (the Node server, a Lambda without a worker function) is then as live as a pull streamed
 * directly, without waiting for the throttled catalog writes. Followers of a job that runs
 * elsewhere find nothing here and poll the catalog.
 */
import type { JobProgress } from '../ports/job-store.ts';

export class JobSignals {
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #live = new Map<string, () => JobProgress>();

  /** The runner here started the job; `progress` reads its in-memory log. */
  started(jobId: string, progress: () => JobProgress): void {
    this.#live.set(jobId, progress);
  }

  /** The runner here recorded the job's end in the catalog: followers read it there. */
  ended(jobId: string): void {
    this.#live.delete(jobId);
    this.notify(jobId);
  }

  /** The in-memory progress of a job running in this process, if it is one. */
  live(jobId: string): (() => JobProgress) | undefined {
    return this.#live.get(jobId);
  }

  notify(jobId: string): void {
    for (const wake of [...(this.#waiters.get(jobId) ?? [])]) wake();
  }

  /** Resolves at the job's next signal, after `ms` or when `signal` aborts, whichever is first. */
  wait(jobId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve();
        return;
      }
      let waiters = this.#waiters.get(jobId);
      if (!waiters) {
        waiters = new Set();
        this.#waiters.set(jobId, waiters);
      }
      const own = waiters;
      const wake = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', wake);
        own.delete(wake);
        if (own.size === 0 && this.#waiters.get(jobId) === own) this.#waiters.delete(jobId);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      signal?.addEventListener('abort', wake, { once: true });
      own.add(wake);
    });
  }
}
