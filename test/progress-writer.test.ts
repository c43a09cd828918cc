/**
 * How often a running job's progress reaches the catalog: a burst of state changes (a small
 * image's whole pull takes milliseconds) is one write plus one within CHANGE_WRITE_MS, not a
 * write per change; a change after a quiet spell is written at once. On a real SQLite job
 * store, counted by a wrapper around its recordJobProgress.
 */
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteJobs } from '../lib/adapters/sqlite/jobs.ts';
import { openCatalogDb } from '../lib/adapters/sqlite/schema.ts';
import { CHANGE_WRITE_MS, ProgressWriter } from '../lib/jobs/progress-writer.ts';
import { systemClock } from '../lib/ports/clock.ts';
import type { JobMessage, JobStore } from '../lib/ports/job-store.ts';
import { type TempDir, tempDir } from './support/tmp.ts';

const OWNER = 'worker-test';
const LEASE_MS = 60_000;

/** What `docker pull` of a two-layer image reports, every message a change of state. */
const PULL_MESSAGES: JobMessage[] = [
  { status: 'Pulling from library/small', id: '1' },
  ...['aaa', 'bbb'].flatMap((id) => [
    { status: 'Pulling fs layer', id },
    { status: 'Downloading', id, progressDetail: { current: 10, total: 10 } },
    { status: 'Verifying Checksum', id },
    { status: 'Download complete', id },
    { status: 'Pull complete', id },
  ]),
  { status: 'Digest: sha256:abc' },
  { status: 'Status: Downloaded newer image for small:1' },
];

describe('ProgressWriter: progress writes of a running job', () => {
  let dir: TempDir;
  let jobs: SqliteJobs;
  let writes = 0;
  let store: JobStore;
  let jobCount = 0;

  beforeAll(async () => {
    dir = await tempDir('progress-writer');
    jobs = new SqliteJobs(openCatalogDb(dir.file('catalog.db')));
    // The real store, counting the writes the writer makes.
    store = Object.assign(Object.create(jobs) as JobStore, {
      recordJobProgress: (...args: Parameters<JobStore['recordJobProgress']>) => {
        writes++;
        return jobs.recordJobProgress(...args);
      },
    });
  });

  afterAll(() => dir?.cleanup());

  /** A queued job claimed by OWNER, and a writer for it. */
  async function runningJob(): Promise<{ id: string; writer: ProgressWriter }> {
    const id = `job-${++jobCount}`;
    const now = systemClock.now();
    await jobs.createOrJoinJob({
      id,
      kind: 'pull',
      key: `pull|${id}`,
      request: { kind: 'pull', reference: `docker.io/library/${id}:1` },
      now,
      expiresAt: now + LEASE_MS,
    });
    await jobs.claimJob(id, { owner: OWNER, now, until: now + LEASE_MS });
    const writer = new ProgressWriter({
      jobStore: store,
      clock: systemClock,
      jobId: id,
      owner: OWNER,
      leaseMs: LEASE_MS,
    });
    return { id, writer };
  }

  it('writes a burst of changes once at once and once within CHANGE_WRITE_MS', async () => {
    const { id, writer } = await runningJob();
    writes = 0;
    // Each message in a turn of the event loop of its own, as socket reads deliver them.
    for (const message of PULL_MESSAGES) {
      writer.onMessage(message);
      await setImmediate();
    }
    await sleep(CHANGE_WRITE_MS + 100);
    expect(writes).toBe(2);
    // The last write carries the burst's end.
    const stored = await jobs.getJob(id);
    expect(stored?.progress.layers.map((l) => l.status)).toEqual([
      'Pulling from library/small',
      'Pull complete',
      'Pull complete',
    ]);
    expect(stored?.progress.lines.at(-1)?.status).toBe(
      'Status: Downloaded newer image for small:1',
    );
    await writer.stop();
  });

  it('writes a change that follows a quiet spell at once', async () => {
    const { id, writer } = await runningJob();
    writer.onMessage({ status: 'Pulling from library/quiet', id: '1' });
    await sleep(CHANGE_WRITE_MS + 100);
    writes = 0;
    writer.onMessage({ status: 'Pulling fs layer', id: 'ccc' });
    // One write, already in the store before any timer ran.
    expect(writes).toBe(1);
    await sleep(0);
    expect((await jobs.getJob(id))?.progress.layers.at(-1)?.status).toBe('Pulling fs layer');
    await writer.stop();
  });
});
