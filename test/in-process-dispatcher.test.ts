/**
 * The in-process dispatcher runs at most JOBS_AT_ONCE jobs and keeps the rest waiting in order;
 * a job sent again while it waits or runs (the redispatcher saw it still queued) runs once; and
 * idle() waits for the waiting jobs too, so the catalog is not closed under them.
 */
import { describe, expect, it } from 'vitest';
import { InProcessDispatcher, JOBS_AT_ONCE } from '../lib/jobs/in-process-dispatcher.ts';

/** A job runner whose jobs end when the test says so. */
function gatedRunner() {
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  let running = 0;
  let most = 0;
  const run = (jobId: string) =>
    new Promise<void>((resolve) => {
      started.push(jobId);
      running++;
      most = Math.max(most, running);
      gates.set(jobId, () => {
        running--;
        resolve();
      });
    });
  return { run, started, end: (jobId: string) => gates.get(jobId)?.(), most: () => most };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('InProcessDispatcher', () => {
  it(`runs ${JOBS_AT_ONCE} jobs at once and starts the waiting ones in order as others end`, async () => {
    const jobs = gatedRunner();
    const dispatcher = new InProcessDispatcher(jobs.run);
    const ids = Array.from({ length: 20 }, (_, i) => `job-${i}`);
    for (const id of ids) await dispatcher.dispatch(id);
    expect(jobs.started).toEqual(ids.slice(0, JOBS_AT_ONCE));
    expect(dispatcher.load).toEqual({ running: JOBS_AT_ONCE, waiting: 20 - JOBS_AT_ONCE });

    jobs.end('job-3');
    await tick();
    expect(jobs.started.at(-1)).toBe(`job-${JOBS_AT_ONCE}`);
    const idle = dispatcher.idle();
    for (let i = 0; i < 20; i++) {
      for (const id of [...jobs.started]) jobs.end(id);
      await tick();
    }
    await idle;
    expect(jobs.started.sort()).toEqual([...ids].sort());
    expect(jobs.most()).toBe(JOBS_AT_ONCE);
    expect(dispatcher.load).toEqual({ running: 0, waiting: 0 });
  });

  it('runs a job sent again while it waits or runs once', async () => {
    const jobs = gatedRunner();
    const dispatcher = new InProcessDispatcher(jobs.run, 1);
    await dispatcher.dispatch('a');
    await dispatcher.dispatch('b');
    await dispatcher.dispatch('a');
    await dispatcher.dispatch('b');
    expect(dispatcher.load).toEqual({ running: 1, waiting: 1 });
    jobs.end('a');
    await tick();
    jobs.end('b');
    await dispatcher.idle();
    expect(jobs.started).toEqual(['a', 'b']);
  });

  it('waits in idle() for jobs that had not started yet', async () => {
    const jobs = gatedRunner();
    const dispatcher = new InProcessDispatcher(jobs.run, 1);
    await dispatcher.dispatch('first');
    await dispatcher.dispatch('second');
    let idle = false;
    const done = dispatcher.idle().then(() => {
      idle = true;
    });
    jobs.end('first');
    await tick();
    expect(idle).toBe(false);
    expect(jobs.started).toEqual(['first', 'second']);
    jobs.end('second');
    await done;
    expect(idle).toBe(true);
  });
});
