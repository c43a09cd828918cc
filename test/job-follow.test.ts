import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { followJob, Redispatcher } from '../lib/jobs/jobs.ts';
import { ProgressLog } from '../lib/jobs/progress-log.ts';
import { LEASE_MS } from '../lib/jobs/runner.ts';
import type { JobMessage } from '../lib/ports/job-store.ts';
import { ManualClock } from './support/upstream-harness.ts';

/**
 * Following a job that runs in another process: only the catalog tells, so the follower polls
 * it and passes on each message once, until the job ends or its time is up.
 */
describe('followJob over the catalog (a worker elsewhere)', () => {
  let catalog: SqliteCatalog;
  const lease = { owner: 'remote-worker', now: 1, until: Date.now() + 60_000 };

  beforeEach(async () => {
    catalog = new SqliteCatalog(':memory:');
    await catalog.createOrJoinJob({
      id: 'job1',
      kind: 'pull',
      key: 'k',
      request: { kind: 'pull', reference: 'docker.io/library/x:1' },
      now: 1,
      expiresAt: 1_000_000,
    });
    await catalog.claimJob('job1', lease);
  });

  afterEach(() => catalog.close());

  /** Plays the remote worker: records `steps` one by one, then ends the job. */
  async function work(steps: JobMessage[], end: boolean) {
    const log = new ProgressLog();
    for (const step of steps) {
      log.add(step);
      await catalog.recordJobProgress('job1', lease, log.snapshot());
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    if (end) {
      await catalog.finishJob('job1', lease.owner, {
        status: 'succeeded',
        result: { kind: 'load', messages: [] },
        progress: log.snapshot(),
        now: 2,
        expiresAt: 3,
      });
    }
  }

  it('passes on every change once, in order, and answers the ended job', async () => {
    const seen: JobMessage[] = [];
    const steps = [
      { status: 'Pulling from library/x', id: '1' },
      { status: 'Pulling fs layer', id: 'aaa' },
      { status: 'Downloading', id: 'aaa', progressDetail: { current: 5, total: 10 } },
      { status: 'Pull complete', id: 'aaa' },
      { status: 'Digest: sha256:abc' },
      { status: 'Status: Downloaded newer image for x:1' },
    ];
    const [job] = await Promise.all([
      followJob(catalog, 'job1', {
        until: Date.now() + 10_000,
        pollMs: 10,
        onMessage: (m) => seen.push(m),
      }),
      work(steps, true),
    ]);
    expect(job?.status).toBe('succeeded');
    expect(seen).toEqual(steps);
  });

  it('stops at its time with the job still running', async () => {
    const seen: JobMessage[] = [];
    await work([{ status: 'Pulling fs layer', id: 'aaa' }], false);
    const started = Date.now();
    const job = await followJob(catalog, 'job1', {
      until: started + 200,
      pollMs: 20,
      onMessage: (m) => seen.push(m),
    });
    expect(job?.status).toBe('running');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(seen).toEqual([{ status: 'Pulling fs layer', id: 'aaa' }]);
    expect(await followJob(catalog, 'nope', { until: Date.now() })).toBeUndefined();
  });

  it('stops reading the job when its signal aborts (the client left)', async () => {
    let reads = 0;
    const gone = new AbortController();
    const counting = Object.assign(Object.create(catalog) as SqliteCatalog, {
      getJob: (id: string) => {
        // The client leaves while the follower waits for its next read.
        if (++reads === 1) setImmediate(() => gone.abort());
        return catalog.getJob(id);
      },
    });
    const started = Date.now();
    const job = await followJob(counting, 'job1', {
      until: started + 30_000,
      pollMs: 20_000,
      signal: gone.signal,
    });
    expect(job?.status).toBe('running');
    expect(reads).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('Redispatcher', () => {
  const clock = new ManualClock();
  const dispatched: string[] = [];
  const redispatcher = new Redispatcher(
    { dispatch: async (id: string) => void dispatched.push(id) },
    clock,
  );
  const job = (status: 'queued' | 'running' | 'succeeded', leaseUntil?: number) => ({
    id: 'j',
    kind: 'pull' as const,
    key: 'k',
    request: { kind: 'pull' as const, reference: 'docker.io/library/x:1' },
    status,
    progress: { layers: [], lines: [], linesSeen: 0 },
    createdAt: clock.now(),
    updatedAt: clock.now(),
    expiresAt: clock.now() + 3600_000,
    ...(leaseUntil !== undefined && { lease: { owner: 'w', until: leaseUntil } }),
  });

  it('dispatches a job whose lease ran out, at most once per 10 s however often it is read', async () => {
    const running = job('running', clock.now() + LEASE_MS);
    expect(await redispatcher.ifAbandoned(running)).toBe(false);
    clock.advance(LEASE_MS + 1);
    expect(await redispatcher.ifAbandoned(running)).toBe(true);
    clock.advance(9_000);
    expect(await redispatcher.ifAbandoned(running)).toBe(false);
    clock.advance(1_000);
    expect(await redispatcher.ifAbandoned(running)).toBe(true);
    expect(dispatched).toEqual(['j', 'j']);
    expect(await redispatcher.ifAbandoned(job('succeeded'))).toBe(false);
    expect(dispatched).toHaveLength(2);
  });
});
