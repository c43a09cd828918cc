import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/digest.ts';
import { ProgressLog } from '../../lib/jobs/progress-log.ts';
import { boundedResult, MAX_JOB_LOAD_MESSAGES } from '../../lib/jobs/runner.ts';
import {
  type JobProgress,
  type JobStore,
  MAX_JOB_PROGRESS_BYTES,
  type NewJob,
} from '../../lib/ports/job-store.ts';
import { type Conformance, freshStore } from './harness.ts';

const DAY = 24 * 3600_000;

function newJob(key: string, now = 1_000): NewJob {
  return {
    id: randomUUID(),
    kind: 'pull',
    key,
    request: { kind: 'pull', reference: key, platform: 'linux/amd64' },
    now,
    expiresAt: now + 7 * DAY,
  };
}

const progress = { layers: [{ status: 'Downloading', id: 'abc' }], lines: [], linesSeen: 0 };

/** The progress of a pull of 1,000 layers with long warnings, compacted as the runner keeps it. */
function hugeProgress(): JobProgress {
  const log = new ProgressLog();
  for (let layer = 0; layer < 1_000; layer++) {
    for (let step = 0; step < 5; step++) {
      log.add({
        status: 'Downloading',
        id: `layer${layer}`.padEnd(12, '0'),
        progressDetail: { current: step * 1000, total: 5000 },
      });
    }
    log.add({ status: `Warning ${layer}: ${'x'.repeat(2_000)}` });
  }
  return log.snapshot();
}

/** The behaviour every JobStore adapter must show; `make` gives a fresh, empty store per test. */
export const jobStoreConformance: Conformance<JobStore> = (name, make) => {
  describe(`JobStore conformance: ${name}`, () => {
    const jobs = freshStore(make);

    it('creates a queued job once per key and joins it while it is active', async () => {
      expect(await jobs.getJob('no-such-job')).toBeUndefined();
      const first = newJob('docker.io/library/alpine:3|linux/amd64');
      const created = await jobs.createOrJoinJob(first);
      expect(created.created).toBe(true);
      expect(created.job).toEqual({
        id: first.id,
        kind: 'pull',
        key: first.key,
        request: first.request,
        status: 'queued',
        progress: { layers: [], lines: [], linesSeen: 0 },
        createdAt: 1_000,
        updatedAt: 1_000,
        expiresAt: 1_000 + 7 * DAY,
      });
      expect(await jobs.getJob(first.id)).toEqual(created.job);

      const joined = await jobs.createOrJoinJob(newJob(first.key, 2_000));
      expect(joined).toEqual({ job: created.job, created: false });
      const other = await jobs.createOrJoinJob(newJob('docker.io/library/alpine:4|linux/amd64'));
      expect(other.created).toBe(true);
      expect(other.job.id).not.toBe(first.id);
    });

    it('lets exactly one of many concurrent requests create the job of a key', async () => {
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => jobs.createOrJoinJob(newJob('k|linux/amd64'))),
      );
      expect(answers.filter((a) => a.created)).toHaveLength(1);
      expect(new Set(answers.map((a) => a.job.id)).size).toBe(1);
    });

    it('claims a queued job once, and lets another owner take it over only after the lease ran out', async () => {
      const { job } = await jobs.createOrJoinJob(newJob('lease'));
      const claimed = await jobs.claimJob(job.id, {
        owner: 'worker-a',
        now: 2_000,
        until: 62_000,
      });
      expect(claimed).toMatchObject({
        status: 'running',
        lease: { owner: 'worker-a', until: 62_000 },
        updatedAt: 2_000,
      });
      expect(
        await jobs.claimJob(job.id, { owner: 'worker-b', now: 3_000, until: 63_000 }),
      ).toBeUndefined();
      expect(
        await jobs.claimJob('no-such-job', { owner: 'worker-b', now: 3_000, until: 63_000 }),
      ).toBeUndefined();
      // The same owner may claim again (a redelivered invocation).
      expect(
        await jobs.claimJob(job.id, { owner: 'worker-a', now: 4_000, until: 64_000 }),
      ).toMatchObject({
        lease: { owner: 'worker-a', until: 64_000 },
      });
      expect(
        await jobs.recordJobProgress(
          job.id,
          { owner: 'worker-a', now: 5_000, until: 65_000 },
          progress,
        ),
      ).toBe(true);

      // worker-a went silent: past its lease, worker-b takes the job over with the progress kept.
      const takeover = await jobs.claimJob(job.id, {
        owner: 'worker-b',
        now: 65_001,
        until: 125_001,
      });
      expect(takeover).toMatchObject({ lease: { owner: 'worker-b' }, progress });
      expect(
        await jobs.recordJobProgress(
          job.id,
          { owner: 'worker-a', now: 66_000, until: 126_000 },
          progress,
        ),
      ).toBe(false);
      const failed = { message: 'boom', status: 502, code: 'UPSTREAM_ERROR' };
      const end = { progress, now: 70_000, expiresAt: 70_000 + DAY };
      expect(
        await jobs.finishJob(job.id, 'worker-a', { status: 'failed', error: failed, ...end }),
      ).toBe(false);
      expect(await jobs.getJob(job.id)).toMatchObject({
        status: 'running',
        lease: { owner: 'worker-b' },
      });
    });

    it('lets exactly one of concurrent claims win', async () => {
      const { job } = await jobs.createOrJoinJob(newJob('race'));
      const claims = await Promise.all(
        ['a', 'b', 'c', 'd'].map((owner) =>
          jobs.claimJob(job.id, { owner, now: 2_000, until: 62_000 }),
        ),
      );
      expect(claims.filter(Boolean)).toHaveLength(1);
    });

    it('finishes with a result and a TTL, frees the key, and never reopens an ended job', async () => {
      const { job } = await jobs.createOrJoinJob(newJob('finish'));
      await jobs.claimJob(job.id, { owner: 'w', now: 2_000, until: 62_000 });
      const result = {
        kind: 'pull' as const,
        imageId: sha256('config'),
        manifest: sha256('manifest'),
        source: sha256('index'),
      };
      const end = {
        status: 'succeeded' as const,
        result,
        progress,
        now: 9_000,
        expiresAt: 9_000 + DAY,
      };
      expect(await jobs.finishJob(job.id, 'w', end)).toBe(true);
      const done = await jobs.getJob(job.id);
      expect(done).toEqual({
        ...job,
        status: 'succeeded',
        result,
        progress,
        updatedAt: 9_000,
        expiresAt: 9_000 + DAY,
      });
      expect(await jobs.finishJob(job.id, 'w', end)).toBe(false);
      expect(
        await jobs.claimJob(job.id, { owner: 'w', now: 10_000, until: 70_000 }),
      ).toBeUndefined();
      expect(
        await jobs.claimJob(job.id, { owner: 'other', now: 100_000, until: 170_000 }),
      ).toBeUndefined();

      const next = await jobs.createOrJoinJob(newJob('finish', 10_000));
      expect(next.created).toBe(true);
      expect(next.job.id).not.toBe(job.id);
      expect(await jobs.getJob(job.id)).toEqual(done);
    });

    it('keeps the error of a failed job', async () => {
      const { job } = await jobs.createOrJoinJob(newJob('fail'));
      await jobs.claimJob(job.id, { owner: 'w', now: 2_000, until: 62_000 });
      const error = { message: 'manifest unknown', status: 404, code: 'NOT_FOUND' };
      const end = {
        status: 'failed' as const,
        error,
        progress,
        now: 3_000,
        expiresAt: 3_000 + DAY,
      };
      expect(await jobs.finishJob(job.id, 'w', end)).toBe(true);
      expect(await jobs.getJob(job.id)).toMatchObject({ status: 'failed', error });
      expect((await jobs.getJob(job.id))?.result).toBeUndefined();
    });

    it('stores compacted progress of a huge pull whole, within the size bound', async () => {
      const { job } = await jobs.createOrJoinJob(newJob('huge'));
      await jobs.claimJob(job.id, { owner: 'w', now: 2_000, until: 62_000 });
      const big = hugeProgress();
      expect(JSON.stringify(big).length).toBeLessThanOrEqual(MAX_JOB_PROGRESS_BYTES);
      expect(big.linesSeen).toBe(1_000);
      expect(
        await jobs.recordJobProgress(job.id, { owner: 'w', now: 3_000, until: 63_000 }, big),
      ).toBe(true);
      expect((await jobs.getJob(job.id))?.progress).toEqual(big);
    });

    it('stores the largest outcome the runner keeps whole, beside the largest progress', async () => {
      const { job } = await jobs.createOrJoinJob(newJob('largest'));
      await jobs.claimJob(job.id, { owner: 'w', now: 2_000, until: 62_000 });
      // Far more lines than are kept, each longer than a line is kept (a tag's registry part has
      // no limit): the kept ones and the largest progress fit in one item.
      const line = (i: number) => `Loaded image: ${'d'.repeat(5_000)}.io/r:${i}`;
      const result = boundedResult({
        kind: 'load',
        messages: Array.from({ length: 1_000 }, (_, i) => line(i)),
      });
      expect(result).toMatchObject({ messages: { length: MAX_JOB_LOAD_MESSAGES + 1 } });
      const big = hugeProgress();
      const end = { status: 'succeeded' as const, result, progress: big, now: 3_000 };
      expect(await jobs.finishJob(job.id, 'w', { ...end, expiresAt: 3_000 + DAY })).toBe(true);
      expect(await jobs.getJob(job.id)).toMatchObject({
        status: 'succeeded',
        result,
        progress: big,
      });
    });
  });
};
