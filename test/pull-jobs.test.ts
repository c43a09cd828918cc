import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Composition, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import type { EngineContext } from '../lib/engine/context.ts';
import type { HttpResponse } from '../lib/engine/http.ts';
import { HANDOVER_MARGIN_MS } from '../lib/engine/job-deadline.ts';
import { createRouter, type Router } from '../lib/engine/router.ts';
import { FOLLOW_POLL_MS, Redispatcher } from '../lib/jobs/jobs.ts';
import { AFTER_LEASE_MS, runAfterLease } from '../lib/jobs/run-after-lease.ts';
import { LEASE_MS } from '../lib/jobs/runner.ts';
import type { JobStore } from '../lib/ports/job-store.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { startDeadlineDoor } from './support/deadline-door.ts';
import type { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { Harness, ManualClock, readAll } from './support/upstream-harness.ts';

/**
 * Pulls behind a front door with a deadline (`request.deadline`, set by the Lambda adapters):
 * the router runs them as jobs on the in-process dispatcher, follows their progress until the
 * deadline nears, then hands over with a job line clients can follow.
 */
const REPO = 'library/slow';

function serve(image: GeneratedImage, registry: FakeRegistry, tag: string) {
  for (const blob of image.blobs) registry.addBlob(blob.bytes!);
  registry.addManifest(REPO, image.digest, image.bytes, image.mediaType);
  registry.addManifest(REPO, tag, image.bytes, image.mediaType);
}

async function lines(response: HttpResponse) {
  const text =
    typeof response.body === 'string'
      ? response.body
      : (await readAll(response.body as Readable)).toString('utf8');
  // biome-ignore lint/suspicious/noExplicitAny: tests check progress lines field by field
  const parse = (line: string) => JSON.parse(line) as any;
  return text.split('\r\n').filter(Boolean).map(parse);
}

describe('pull as a background job when the front door has a deadline', () => {
  const harness = new Harness();
  let registry: FakeRegistry;
  let dataDir: string;
  let clock: ManualClock;
  let cache: Composition;
  let router: Router;
  let image: GeneratedImage;

  beforeEach(async () => {
    registry = await harness.registry();
    dataDir = await mkdtemp(join(tmpdir(), 'pull-jobs-'));
    const config = parseServeArgs(['--data', dataDir, '--gc-interval', '0'], {
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url.origin}`,
    });
    clock = new ManualClock();
    const upstream = harness.upstream(registry, { registries: config.registries, clock });
    cache = composeEmbedded(config, { clock, upstream });
    router = createRouter(cache.context);
    image = await generateImage({ seed: 'pull-jobs', layers: [{ files: [96 * 1024] }] });
    serve(image, registry, '1');
  });

  afterEach(async () => {
    await cache.close();
    await harness.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Deadline `followMs` after the margin: how long the route may follow before handing over. */
  const pull = (tag: string, followMs: number, query: Record<string, string> = {}, via = router) =>
    via({
      method: 'POST',
      path: '/v1.47/images/create',
      query: new URLSearchParams({ fromImage: `docker.io/${REPO}`, tag, ...query }),
      headers: { host: 'cache.example.com' },
      deadline: Date.now() + HANDOVER_MARGIN_MS + followMs,
    });

  const getJob = async (id: string, wait?: number) => {
    const response = await router({
      method: 'GET',
      path: `/cache/jobs/${id}`,
      query: new URLSearchParams(wait === undefined ? {} : { wait: String(wait) }),
      headers: {},
    });
    return { status: response.status, body: JSON.parse(String(response.body)) };
  };

  it('streams the progress so far, hands over with a job line, and the job finishes the pull', async () => {
    const layer = image.layers[0]!;
    registry.inject(registry.blobPath(REPO, layer.digest), {
      kind: 'slow',
      chunkBytes: 8 * 1024,
      delayMs: 250,
    });

    const first = await pull('1', 800);
    expect(first.status).toBe(200);
    const firstLines = await lines(first);
    const last = firstLines.at(-1);
    expect(last.job).toEqual({
      id: expect.stringMatching(/^[a-f0-9]{32}$/),
      url: `/cache/jobs/${last.job.id}`,
    });
    expect(last.errorDetail.message).toBe(last.error);
    expect(last.error).toContain(`the pull continues in the background as job ${last.job.id}`);
    expect(last.error).toContain('run the same docker pull again');
    expect(last.error).toContain(`'https://cache.example.com/cache/jobs/${last.job.id}?wait=20'`);
    // The progress that existed: at least the "Pulling from" line, none of the end.
    expect(firstLines[0]).toMatchObject({ status: `Pulling from ${REPO}`, id: '1' });
    expect(firstLines.some((l) => String(l.status).startsWith('Status:'))).toBe(false);

    // The same pull again joins the job (no second upstream fetch) and, given time, ends it.
    const second = await pull('1', 20_000);
    const secondLines = await lines(second);
    expect(secondLines.some((l) => l.job)).toBe(false);
    expect(secondLines.at(-1)).toEqual({
      status: 'Status: Downloaded newer image for slow:1',
    });
    expect(secondLines.map((l) => l.status)).toContain(`Pulling from ${REPO}`);
    expect(registry.count(registry.blobPath(REPO, layer.digest), 'GET')).toBe(1);

    const job = await getJob(last.job.id, 30);
    expect(job.status).toBe(200);
    expect(job.body).toMatchObject({
      id: last.job.id,
      url: `/cache/jobs/${last.job.id}`,
      kind: 'pull',
      status: 'succeeded',
      request: { kind: 'pull', reference: `docker.io/${REPO}:1` },
      result: { kind: 'pull', imageId: image.configBlob.digest, manifest: image.digest },
    });
    expect(job.body.progress.lines.at(-1)).toEqual({
      status: 'Status: Downloaded newer image for slow:1',
    });
    expect(Date.parse(job.body.expiresAt)).toBeGreaterThan(Date.parse(job.body.updatedAt));

    const list = await router({
      method: 'GET',
      path: '/images/json',
      query: new URLSearchParams(),
      headers: {},
    });
    const images = JSON.parse(String(list.body)) as { Id: string; RepoTags: string[] }[];
    expect(images).toEqual([
      expect.objectContaining({
        Id: image.configBlob.digest,
        RepoTags: [`${REPO.replace('library/', '')}:1`],
      }),
    ]);
  });

  it('answers a pull of a fresh cached tag in the request, without a job, however close the deadline', async () => {
    const untimed = await router({
      method: 'POST',
      path: '/v1.47/images/create',
      query: new URLSearchParams({ fromImage: `docker.io/${REPO}`, tag: '1' }),
      headers: {},
    });
    expect((await lines(untimed)).at(-1)).toEqual({
      status: 'Status: Downloaded newer image for slow:1',
    });
    // No time to follow a job at all: only an answer from the catalog can finish.
    const again = await lines(await pull('1', 0));
    expect(again.some((l) => l.job || l.errorDetail)).toBe(false);
    expect(again.at(-1)).toEqual({ status: 'Status: Image is up to date for slow:1' });
    expect(registry.count(registry.blobPath(REPO, image.layers[0]!.digest), 'GET')).toBe(1);
  });

  it('lets the project CLI follow a handed-over pull to its end', async () => {
    registry.inject(registry.blobPath(REPO, image.layers[0]!.digest), {
      kind: 'slow',
      chunkBytes: 8 * 1024,
      delayMs: 200,
    });
    const door = await startDeadlineDoor(router, { followMs: 300 });
    try {
      const { code, stdout, stderr } = await runCliAgainst(door.url, [
        'pull',
        `docker.io/${REPO}:1`,
      ]);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(stdout).toContain(`1: Pulling from ${REPO}`);
      expect(stdout).toContain('Status: Downloaded newer image for slow:1');
      expect(stdout.trim().split('\n').at(-1)).toBe(`docker.io/${REPO}:1`);
      expect(stdout).not.toContain('continues in the background');
      expect(door.requests.filter((r) => r.startsWith('GET /cache/jobs/'))).not.toEqual([]);
    } finally {
      await door.close();
    }
    expect(registry.count(registry.blobPath(REPO, image.layers[0]!.digest), 'GET')).toBe(1);
  });

  it('long-polls a running job until it ends', async () => {
    registry.inject(registry.blobPath(REPO, image.layers[0]!.digest), {
      kind: 'slow',
      chunkBytes: 16 * 1024,
      delayMs: 150,
    });
    const handed = (await lines(await pull('1', 100))).at(-1);
    expect(handed.job).toBeDefined();
    const now = await getJob(handed.job.id);
    expect(['queued', 'running']).toContain(now.body.status);
    const started = Date.now();
    const done = await getJob(handed.job.id, 30);
    expect(done.body.status).toBe('succeeded');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('answers an unknown tag with 404 and a refused registry with 403, as without jobs', async () => {
    const unknown = await pull('nope', 5_000);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(String(unknown.body)).message).toMatch(/nope|not found|unknown/i);

    const refused = await router({
      method: 'POST',
      path: '/images/create',
      query: new URLSearchParams({ fromImage: 'ghcr.io/o/a', tag: '1' }),
      headers: {},
      deadline: Date.now() + 10_000,
    });
    expect(refused.status).toBe(403);
  });

  it('answers 404 for an unknown job and 400 for a bad wait', async () => {
    expect((await getJob('0123456789abcdef0123456789abcdef')).status).toBe(404);
    const created = (await lines(await pull('1', 5_000))).at(-1);
    expect(created).toEqual({ status: 'Status: Downloaded newer image for slow:1' });
    const bad = await router({
      method: 'GET',
      path: '/cache/jobs/abc',
      query: new URLSearchParams({ wait: 'soon' }),
      headers: {},
    });
    expect(bad.status).toBe(400);
  });
  /**
   * A job whose worker died: whoever waits on it or follows it dispatches it again once its
   * lease has run out, a worker whose claim meets a live lease waits for it, and a follower
   * whose client left stops reading the catalog.
   */
  describe('when the worker died', () => {
    const KEY = `pull|docker.io/${REPO}:1|default`;

    /** The job as a worker that then died left it: running, its lease `leaseMs` from now. */
    async function orphanedPull(leaseMs = LEASE_MS, progress = false): Promise<string> {
      const { jobStore } = cache.context;
      const now = clock.now();
      const { job } = await jobStore.createOrJoinJob({
        id: 'orphan0123456789abcdef0123456789',
        kind: 'pull',
        key: KEY,
        request: { kind: 'pull', reference: `docker.io/${REPO}:1` },
        now,
        expiresAt: now + 3600_000,
      });
      const lease = { owner: 'dead-worker', now, until: now + leaseMs };
      expect(await jobStore.claimJob(job.id, lease)).toBeDefined();
      const lines = progress ? [{ status: `Pulling from ${REPO}`, id: '1' }] : [];
      await jobStore.recordJobProgress(job.id, lease, {
        layers: [],
        lines,
        linesSeen: lines.length,
      });
      return job.id;
    }

    /** What the worker function's run needs; `sleep` moves the manual clock instead of waiting. */
    const workerDeps = (sleep: (ms: number) => Promise<void>) => ({
      runner: cache.context.jobs!.runner,
      jobStore: cache.context.jobStore,
      clock,
      sleep,
    });

    const via = (context: Partial<EngineContext>) => createRouter({ ...cache.context, ...context });

    it('GET /cache/jobs/<id>?wait= dispatches a job whose lease ran out again, and it finishes', async () => {
      const id = await orphanedPull();
      clock.advance(LEASE_MS + 1);
      const job = await getJob(id, 20);
      expect(job.body).toMatchObject({
        id,
        status: 'succeeded',
        result: { manifest: image.digest },
      });
      expect(registry.count(registry.blobPath(REPO, image.layers[0]!.digest), 'GET')).toBe(1);
    });

    it('a follower dispatches the job again once the lease of its dead worker runs out', async () => {
      const jobs = cache.context.jobs!;
      let dispatches = 0;
      let died!: () => void;
      const dead = new Promise<void>((resolve) => {
        died = resolve;
      });
      // The first dispatch reaches a worker that claims the job and dies at once.
      const dispatcher = {
        dispatch: async (jobId: string) => {
          if (dispatches++ > 0) return jobs.dispatcher.dispatch(jobId);
          const now = clock.now();
          await cache.context.jobStore.claimJob(jobId, {
            owner: 'dead-worker',
            now,
            until: now + LEASE_MS,
          });
          died();
        },
      };
      // Followers re-dispatch through the same dispatcher the job first went to.
      const redispatcher = new Redispatcher(dispatcher, clock);
      const response = pull('1', 15_000, {}, via({ jobs: { ...jobs, dispatcher, redispatcher } }));
      await dead;
      clock.advance(LEASE_MS + 1);
      const out = await lines(await response);
      expect(out.some((line) => line.job)).toBe(false);
      expect(out.at(-1)).toEqual({ status: 'Status: Downloaded newer image for slow:1' });
      expect(dispatches).toBe(2);
    });

    it('a worker whose claim meets a live lease waits until it runs out, then takes the job', async () => {
      const id = await orphanedPull();
      const waited: number[] = [];
      const deps = workerDeps(async (ms) => {
        waited.push(ms);
        clock.advance(ms);
      });
      // Not enough time left to wait and run: left to a later start, as before.
      expect(await runAfterLease(deps, id, () => LEASE_MS)).toBeUndefined();
      expect(waited).toEqual([]);

      clock.advance(10_000);
      const job = await runAfterLease(deps, id, () => 15 * 60_000);
      expect(waited).toEqual([LEASE_MS - 10_000 + AFTER_LEASE_MS]);
      expect(job).toMatchObject({ id, status: 'succeeded' });
    });

    it('a worker gives up when the lease it waited for was renewed (its owner is alive)', async () => {
      const id = await orphanedPull();
      const deps = workerDeps(async (ms) => {
        clock.advance(ms);
        const now = clock.now();
        const lease = { owner: 'dead-worker', now, until: now + LEASE_MS };
        await cache.context.jobStore.recordJobProgress(id, lease, {
          layers: [],
          lines: [],
          linesSeen: 0,
        });
      });
      expect(await runAfterLease(deps, id, () => 15 * 60_000)).toBeUndefined();
      expect(await cache.context.jobStore.getJob(id)).toMatchObject({
        status: 'running',
        lease: { owner: 'dead-worker' },
      });
    });

    it('a follower stops reading the job once its client closed the response', async () => {
      // A live worker elsewhere: the job runs on, only the follower should stop.
      await orphanedPull(3600_000, true);
      const counted = countingGetJob(cache.context.jobStore);
      const response = await pull('1', 60_000, {}, via({ jobStore: counted.jobStore }));
      const body = response.body as Readable;
      expect(JSON.parse(String(body.read()))).toMatchObject({ status: `Pulling from ${REPO}` });
      body.destroy();
      const atClose = counted.calls();
      // Four polls' time: a follower that went on would read the job about four more times.
      await sleep(4 * FOLLOW_POLL_MS);
      expect(counted.calls()).toBeLessThanOrEqual(atClose + 1);
    });

    it('a wait on /cache/jobs/<id> ends when its client leaves (request.signal)', async () => {
      const id = await orphanedPull(3600_000, true);
      const counted = countingGetJob(cache.context.jobStore);
      const gone = new AbortController();
      const answer = via({ jobStore: counted.jobStore })({
        method: 'GET',
        path: `/cache/jobs/${id}`,
        query: new URLSearchParams({ wait: '60' }),
        headers: {},
        signal: gone.signal,
      });
      await sleep(2 * FOLLOW_POLL_MS);
      gone.abort();
      const started = Date.now();
      const response = await answer;
      // It answers what it has at once rather than after the 60 s it was asked to wait.
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(JSON.parse(String(response.body))).toMatchObject({ id, status: 'running' });
      const atAbort = counted.calls();
      await sleep(4 * FOLLOW_POLL_MS);
      expect(counted.calls()).toBe(atAbort);
    });
  });
});

/** Counts getJob calls: what a follower costs the catalog. */
function countingGetJob(jobStore: JobStore): { jobStore: JobStore; calls: () => number } {
  let calls = 0;
  const wrapped = new Proxy(jobStore, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === 'getJob') {
        return (id: string) => {
          calls++;
          return target.getJob(id);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { jobStore: wrapped, calls: () => calls };
}
