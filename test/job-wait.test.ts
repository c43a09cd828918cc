import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../lib/adapters/sqlite-catalog.ts';
import { ApiClient, ApiError } from '../lib/cli/http.ts';
import { STALLED_AFTER_MS, TRANSIENT_FAILURES, waitForJob } from '../lib/cli/job-wait.ts';
import type { EngineContext } from '../lib/engine/context.ts';
import { type HttpRequest, json } from '../lib/engine/http.ts';
import { createRouter, type Router } from '../lib/engine/router.ts';
import { LEASE_MS } from '../lib/jobs/runner.ts';
import { CacheMetrics } from '../lib/metrics/cache-metrics.ts';
import { type DeadlineDoor, startDeadlineDoor } from './support/deadline-door.ts';
import { ManualClock } from './support/upstream-harness.ts';

/**
 * The CLI's wait on a job, against the real route on a loopback server: it stops with a clear
 * error when the job no longer moves, and lets a few gateway hiccups pass.
 */
const ID = 'feed0123456789abcdef0123456789ab';

describe('waitForJob', () => {
  let catalog: SqliteCatalog;
  let clock: ManualClock;
  let door: DeadlineDoor | undefined;

  beforeEach(async () => {
    catalog = new SqliteCatalog(':memory:');
    clock = new ManualClock();
    const now = clock.now();
    await catalog.createOrJoinJob({
      id: ID,
      kind: 'pull',
      key: 'pull|docker.io/library/x:1|default',
      request: { kind: 'pull', reference: 'docker.io/library/x:1' },
      now,
      expiresAt: now + 3600_000,
    });
  });

  afterEach(async () => {
    await door?.close();
    door = undefined;
    catalog.close();
  });

  /** The jobs route alone; `through` sees every request first. */
  async function serve(through: (request: HttpRequest, route: Router) => ReturnType<Router>) {
    const route = createRouter({
      jobStore: catalog,
      clock,
      metrics: new CacheMetrics(),
    } as unknown as EngineContext);
    // No time to wait on the server: every poll answers at once.
    const front = Object.assign((request: HttpRequest) => through(request, route), {
      routes: route.routes,
    });
    door = await startDeadlineDoor(front, { followMs: 0 });
    return new ApiClient({ baseUrl: door.url });
  }

  it('stops with an error naming the job when it has not moved for three leases', async () => {
    // Held by a worker whose lease is far from over, yet nothing is written: nobody restarts it.
    const now = clock.now();
    await catalog.claimJob(ID, { owner: 'stuck', now, until: now + 3600_000 });
    let polls = 0;
    let clientNow = 0;
    const client = await serve((request, route) => {
      polls++;
      clientNow += LEASE_MS; // each poll as if it took a minute
      return route(request);
    });
    const error = await waitForJob(client, `/cache/jobs/${ID}`, undefined, {
      now: () => clientNow,
    }).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^job ${ID} has not moved for 3 minutes \\(still running\\).*run the same command again`,
        'i',
      ),
    );
    expect(polls).toBe(5);
    expect(STALLED_AFTER_MS).toBe(3 * LEASE_MS);
  }, 15_000);

  it('keeps waiting through a dropped connection and a 503, then answers the ended job', async () => {
    const now = clock.now();
    await catalog.claimJob(ID, { owner: 'worker', now, until: now + LEASE_MS });
    await catalog.finishJob(ID, 'worker', {
      status: 'succeeded',
      result: { kind: 'load', messages: ['Loaded image: x:1'] },
      progress: { layers: [], lines: [], linesSeen: 0 },
      now: clock.now(),
      expiresAt: clock.now() + 3600_000,
    });
    const failures = [
      () => Promise.reject(new Error('connection dropped')),
      () => Promise.resolve(json(503, { message: 'Service Unavailable' })),
    ];
    const client = await serve((request, route) => failures.shift()?.() ?? route(request));
    const job = await waitForJob(client, `/cache/jobs/${ID}`, undefined, { retryPauseMs: 0 });
    expect(job).toMatchObject({ id: ID, status: 'succeeded' });
    expect(failures).toEqual([]);
  });

  it('gives up after a few failed polls in a row', async () => {
    let polls = 0;
    const client = await serve(async () => {
      polls++;
      return json(502, { message: 'Internal Server Error' });
    });
    const error = await waitForJob(client, `/cache/jobs/${ID}`, undefined, {
      retryPauseMs: 0,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(502);
    expect(polls).toBe(TRANSIENT_FAILURES + 1);
  });
});
