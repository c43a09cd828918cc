import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { JobStore, NewJob } from '../../lib/ports/job-store.ts';
import { type Conformance, freshStore } from './harness.ts';

const DAY = 24 * 3600_000;
const NO_PROGRESS = { layers: [], lines: [], linesSeen: 0 };

function pullJob(reference: string, now: number, expiresAt = now + 7 * DAY): NewJob {
  return {
    id: randomUUID(),
    kind: 'pull',
    key: reference,
    request: { kind: 'pull', reference },
    now,
    expiresAt,
  };
}

/** The dashboard's running and recent jobs: newest first, active or not yet expired. */
export const jobListingConformance: Conformance<JobStore> = (name, make) => {
  describe(`JobStore listing conformance: ${name}`, () => {
    const jobs = freshStore(make);

    it('lists jobs newest first, as stored, up to the limit', async () => {
      const created = [];
      for (const [i, ref] of ['a:1', 'b:1', 'c:1', 'd:1'].entries()) {
        created.push((await jobs.createOrJoinJob(pullJob(ref, 1_000 + i * 10))).job);
      }
      const listed = await jobs.listRecentJobs(10, 2_000);
      expect(listed).toEqual([...created].reverse());
      expect((await jobs.listRecentJobs(2, 2_000)).map((j) => j.request)).toEqual([
        { kind: 'pull', reference: 'd:1' },
        { kind: 'pull', reference: 'c:1' },
      ]);
      // A joined job is listed once.
      await jobs.createOrJoinJob(pullJob('a:1', 1_500));
      expect(await jobs.listRecentJobs(10, 2_000)).toHaveLength(4);
      expect(await jobs.listRecentJobs(1, 2_000)).toHaveLength(1);
    });

    it('shows a job as it is now: claimed, then ended with its outcome', async () => {
      const { job } = await jobs.createOrJoinJob(pullJob('e:1', 1_000));
      await jobs.claimJob(job.id, { owner: 'w', now: 1_100, until: 60_000 });
      expect((await jobs.listRecentJobs(5, 1_200))[0]).toMatchObject({
        id: job.id,
        status: 'running',
        lease: { owner: 'w' },
      });
      const error = { message: 'manifest unknown', status: 404, code: 'NOT_FOUND' };
      await jobs.finishJob(job.id, 'w', {
        status: 'failed',
        error,
        progress: NO_PROGRESS,
        now: 1_300,
        expiresAt: 1_300 + DAY,
      });
      expect((await jobs.listRecentJobs(5, 1_400))[0]).toMatchObject({
        id: job.id,
        status: 'failed',
        error,
        updatedAt: 1_300,
      });
    });

    it('leaves out ended jobs past their expiry, never active ones', async () => {
      const ended = (await jobs.createOrJoinJob(pullJob('f:1', 1_000, 5_000))).job;
      await jobs.claimJob(ended.id, { owner: 'w', now: 1_000, until: 60_000 });
      await jobs.finishJob(ended.id, 'w', {
        status: 'succeeded',
        result: { kind: 'load', messages: [] },
        progress: NO_PROGRESS,
        now: 2_000,
        expiresAt: 5_000,
      });
      const active = (await jobs.createOrJoinJob(pullJob('g:1', 1_500, 5_000))).job;
      expect((await jobs.listRecentJobs(10, 4_000)).map((j) => j.id)).toEqual([
        active.id,
        ended.id,
      ]);
      // Past both expiries: the queued job is still there to be run, the ended one is not.
      expect((await jobs.listRecentJobs(10, 6_000)).map((j) => j.id)).toEqual([active.id]);
    });

    it('answers nothing for an empty store', async () => {
      expect(await jobs.listRecentJobs(20, 1_000)).toEqual([]);
    });
  });
};
