/**
 * Watched references in the deployed shape (issue 15), against DynamoDB Local and fauxqs: the
 * api function (a PUT /cache/watch), the Watch function as EventBridge invokes it every minute,
 * and the worker function fed by the job queue (test/support/sqs-event-source.ts, a process per
 * message). A real registry plays Docker Hub behind a recording proxy, so the test sees exactly
 * what each function asked upstream: the Watch function only HEADs, the worker downloads, and
 * the next client asks for nothing. Each function is a module graph (a container) of its own;
 * two Watch containers run at once to show the claims in the table keep a check single.
 */
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type QueueAttributeName,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import type { lambdaRuntime } from '../lib/lambda/runtime.ts';
import type { WatchPassReport } from '../lib/watch/watcher.ts';
import { awsEmulators, freshResourceNames } from './support/aws-emulators.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { apiEvent, lambdaContext } from './support/lambda-http-event.ts';
import { pushImage } from './support/push.ts';
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import {
  type ServerlessStack,
  startServerlessStack,
  stopServerlessProcess,
} from './support/serverless-stack.ts';
import { type SqsEventSource, startSqsEventSource } from './support/sqs-event-source.ts';

afterAll(stopServerlessProcess);

type Handler<E, R> = (event: E, context: ReturnType<typeof lambdaContext>) => Promise<R>;
type ApiHandler = Handler<ReturnType<typeof apiEvent>, APIGatewayProxyStructuredResultV2>;
type WatchHandler = Handler<unknown, WatchPassReport>;

interface Listing {
  watches: {
    name: string;
    nextCheck: string;
    lastError: string | null;
    digest: string | null;
    jobs: string[];
  }[];
  registries: { registry: string; pausedUntil: string | null; pauseReason: string | null }[];
}

const WORKER_TIMEOUT_MS = 60_000;
/** The Watch function's timeout in the stack (infra/image-cache-stack.ts): one minute. */
const WATCH_TIMEOUT_MS = 60_000;
const REPOS = ['app', 'steady', 'other'] as const;
const nameOf = (repo: string) => `docker.io/library/${repo}:1`;

describe('watched tags on AWS: the Watch function, the job queue and the worker', () => {
  let upstream: RecordingProxy;
  let stack: ServerlessStack;
  let sqs: SQSClient;
  let queueUrl = '';
  let functionEnv: Record<string, string> = {};
  let api: ApiHandler;
  /**
   * Lambda's event source mapping, two invocations at once. It runs all along: stopping one
   * mid-poll may leave a message taken by the abandoned receive, hidden until its visibility
   * timeout.
   */
  let sources: SqsEventSource[] = [];
  /** Two containers of the Watch function, each with its own composition. */
  const watchers: { handler: WatchHandler; runtime: typeof lambdaRuntime }[] = [];
  /** A third container whose job queue does not exist: every pull it starts fails to send. */
  let broken: { handler: WatchHandler; runtime: typeof lambdaRuntime };
  const versions: Record<string, GeneratedImage[]> = {};

  const publish = async (repo: string, n: number) => {
    const image = await generateImage({ seed: `watch-lambda-${repo}-${n}`, layers: 1 });
    versions[repo] ??= [];
    versions[repo][n] = image;
    await pushImage({ url: stack.registry.url, repository: `library/${repo}` }, image, {
      tags: ['1'],
    });
    return image;
  };

  beforeAll(async () => {
    const emulators = await awsEmulators();
    // fauxqs serves SQS on the same port as S3.
    const sqsEndpoint = emulators.s3.endpoint;
    sqs = new SQSClient({
      endpoint: sqsEndpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    queueUrl = (
      await sqs.send(
        new CreateQueueCommand({
          QueueName: `watch-jobs-${freshResourceNames().table}`,
          Attributes: { VisibilityTimeout: '90' },
        }),
      )
    ).QueueUrl!;
    // The registry is the stack's own; the proxy in front of it is what the functions know.
    upstream = await startRecordingProxy('http://127.0.0.1:9');
    stack = await startServerlessStack('watch-lambda', {
      registries: { 'docker.io': upstream.url },
      env: {
        AWS_ENDPOINT_URL_SQS: sqsEndpoint,
        IMAGE_CACHE_JOB_QUEUE_URL: queueUrl,
        IMAGE_CACHE_WATCH_MIN_EVERY: '1s',
      },
    });
    upstream.retarget(stack.registry.url);
    functionEnv = Object.fromEntries(
      Object.entries(process.env).filter(
        (entry): entry is [string, string] =>
          /^(AWS_|IMAGE_CACHE_)/.test(entry[0]) && entry[1] !== undefined,
      ),
    );
    for (const repo of REPOS) await publish(repo, 0);
    sources = [1, 2].map(() =>
      startSqsEventSource({
        client: sqs,
        queueUrl,
        env: functionEnv,
        timeoutMs: WORKER_TIMEOUT_MS,
      }),
    );

    api = ((await import('../functions/api.ts')) as { handler: ApiHandler }).handler;
    for (let i = 0; i < 2; i++) {
      vi.resetModules();
      const { handler } = (await import('../functions/watch.ts')) as { handler: WatchHandler };
      const { lambdaRuntime: runtime } = await import('../lib/lambda/runtime.ts');
      // A warm container: its cold start must not put one pass seconds behind the other.
      await runtime();
      watchers.push({ handler, runtime });
    }
    vi.resetModules();
    const { handler } = (await import('../functions/watch.ts')) as { handler: WatchHandler };
    const { lambdaRuntime: runtime } = await import('../lib/lambda/runtime.ts');
    await runtime({ ...process.env, IMAGE_CACHE_JOB_QUEUE_URL: `${queueUrl}-missing` });
    broken = { handler, runtime };
  }, 120_000);

  afterAll(async () => {
    await Promise.all(sources.map((source) => source.stop()));
    for (const watcher of [...watchers, broken]) {
      if (watcher) await (await watcher.runtime()).composition.close();
    }
    sqs?.destroy();
    await upstream?.close();
    await stack?.close();
  });

  /** One api invocation with the admin token; the answer's body as text. */
  const call = async (method: string, path: string, query = '') => {
    const auth = { authorization: `Bearer ${stack.tokens.admin}` };
    const answer = await api(apiEvent(method, path, auth, query), lambdaContext(30_000));
    const raw = answer.body ?? '';
    const body = answer.isBase64Encoded ? Buffer.from(raw, 'base64').toString('utf8') : raw;
    return { status: answer.statusCode, body };
  };
  const listing = async () => JSON.parse((await call('GET', '/cache/watch')).body) as Listing;
  const watched = async (repo: string) =>
    (await listing()).watches.find((w) => w.name === nameOf(repo))!;
  /** The Watch function as EventBridge invokes it, in `container` (or watchers[n]). */
  const tick = (n = 0, container = watchers[n]!) =>
    container.handler(
      { source: 'aws.events', 'detail-type': 'Scheduled Event' },
      lambdaContext(WATCH_TIMEOUT_MS, 'image-cache-watch'),
    );
  /** Waits until every watch of `repos` is due. */
  const due = (repos: readonly string[]) =>
    vi.waitFor(
      async () => {
        const now = Date.now();
        const list = (await listing()).watches.filter((w) =>
          repos.some((r) => w.name === nameOf(r)),
        );
        expect(list).toHaveLength(repos.length);
        for (const w of list) expect(Date.parse(w.nextCheck)).toBeLessThanOrEqual(now);
      },
      { timeout: 5_000, interval: 100 },
    );
  const queued = async () => {
    const names: QueueAttributeName[] = [
      'ApproximateNumberOfMessages',
      'ApproximateNumberOfMessagesNotVisible',
    ];
    const { Attributes: counts = {} } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: names }),
    );
    return (
      Number(counts.ApproximateNumberOfMessages) +
      Number(counts.ApproximateNumberOfMessagesNotVisible)
    );
  };
  /**
   * Waits until the worker function, fed by the queue, has run `jobIds` to success. Nothing else
   * runs jobs here (no function runs them in process), so whatever finished them came through
   * the queue.
   */
  const runByWorker = async (jobIds: string[]) => {
    const deliveries = () => sources.flatMap((source) => source.deliveries);
    await vi.waitFor(
      () => {
        const done = deliveries().filter((d) => d.outcome === 'deleted');
        const seen = JSON.stringify(deliveries().map((d) => ({ ...d, child: undefined })));
        const finished = done.map((d) => JSON.parse(d.body).jobId);
        expect(finished, seen).toEqual(expect.arrayContaining(jobIds));
      },
      { timeout: WORKER_TIMEOUT_MS + 10_000, interval: 200 },
    );
    for (const id of jobIds) {
      expect(await stack.adapters.catalog.getJob(id)).toMatchObject({ status: 'succeeded' });
    }
  };
  const sentFor = (repo: string) =>
    upstream.exchanges
      .filter((e) => e.path.startsWith(`/v2/library/${repo}/`))
      .map((e) => `${e.method} ${e.path}`);

  it('sends the pull of a new watch to the queue, which the worker runs', async () => {
    upstream.clear();
    const created = await call('PUT', '/cache/watch/app:1', 'every=1s&pin=1');
    expect(created.status).toBe(201);
    const pulls = (JSON.parse(created.body) as { pulls: { id: string }[] }).pulls;
    expect(pulls).toHaveLength(1);
    // Queued, not run: the api function fetched nothing (read before a worker process could
    // have started: the message left with the answer).
    expect(upstream.exchanges.filter((e) => e.method === 'GET')).toEqual([]);
    expect(await queued()).toBe(1);
    await runByWorker([pulls[0]!.id]);
    expect(await stack.adapters.catalog.getTag('docker.io/library/app', '1')).toMatchObject({
      manifest: versions.app![0]!.digest,
    });
  }, 120_000);

  it('hands a moved tag to the queue with one HEAD, and the next client asks upstream nothing', async () => {
    const moved = await publish('app', 1);
    await due(['app']);
    upstream.clear();
    const report = await tick();
    expect(report).toMatchObject({ due: 1, checked: 1, changed: 1, failed: 0 });
    // The Watch function itself downloads nothing: the pull went to the queue (read at once,
    // before a worker process could have started on the message).
    expect(sentFor('app')).toEqual(['HEAD /v2/library/app/manifests/1']);
    expect(await queued()).toBe(1);
    const changed = await watched('app');
    expect(changed).toMatchObject({ digest: moved.digest, lastError: null });
    expect(changed.jobs).toHaveLength(1);
    await runByWorker(changed.jobs);
    expect(sentFor('app').filter((e) => e.startsWith('GET '))).not.toEqual([]);

    // The next pass confirms the tag and moves the watch's pin to the new image.
    await due(['app']);
    upstream.clear();
    expect(await tick()).toMatchObject({ due: 1, checked: 1, changed: 0, failed: 0 });
    expect(sentFor('app')).toEqual(['HEAD /v2/library/app/manifests/1']);
    const pins = JSON.parse((await call('GET', '/cache/pins')).body) as {
      Name: string;
      Manifest: string;
    }[];
    expect(pins.filter((p) => p.Name === nameOf('app')).map((p) => p.Manifest)).toEqual([
      moved.digest,
    ]);

    upstream.clear();
    const pulled = await call('POST', '/v1.47/images/create', 'fromImage=app&tag=1');
    expect(pulled.status).toBe(200);
    expect(pulled.body).toContain(`Digest: ${moved.digest}`);
    expect(upstream.exchanges.filter((e) => e.method === 'GET')).toEqual([]);
  }, 120_000);

  it('checks each due watch once when two invocations overlap, and says what a pass costs', async () => {
    const jobs: string[] = [];
    for (const repo of ['steady', 'other']) {
      const created = await call('PUT', `/cache/watch/${repo}:1`, 'every=1s');
      expect(created.status).toBe(201);
      jobs.push(
        ...(JSON.parse(created.body) as { pulls: { id: string }[] }).pulls.map((p) => p.id),
      );
    }
    expect(jobs).toHaveLength(2);
    await runByWorker(jobs);

    await due(REPOS);
    upstream.clear();
    const reports = await Promise.all([tick(0), tick(1)]);
    // Every due watch checked by one of the two, once: one HEAD each.
    expect(reports[0]!.checked + reports[1]!.checked).toBe(REPOS.length);
    for (const repo of REPOS)
      expect(sentFor(repo)).toEqual([`HEAD /v2/library/${repo}/manifests/1`]);
    expect(upstream.exchanges.filter((e) => e.method !== 'HEAD')).toEqual([]);

    // DynamoDB requests of a pass with every watch due and unchanged (docs/aws.md, "Watched
    // tags"): the two listings (watches, pauses), then each watch's claim, tag, manifest,
    // confirmation and outcome, the pinned one's pin listing, and the invocation's stats.
    const catalog = (await watchers[0]!.runtime()).composition.context.catalog as DynamoCatalog;
    await due(REPOS);
    catalog.requests.reset();
    expect(await tick()).toMatchObject({ due: REPOS.length, checked: REPOS.length });
    const busy = catalog.requests.byOperation();
    console.log(JSON.stringify({ dueWatches: REPOS.length, pinned: 1, busy }));
    expect(busy).toEqual({
      Query: 2 + 1,
      GetItem: 2 * REPOS.length,
      UpdateItem: 3 * REPOS.length + 1,
    });
  }, 120_000);

  it("records a pull the queue refused as the watch's error, and finishes the pass", async () => {
    await publish('other', 1);
    await due(['other']);
    upstream.clear();
    const report = await tick(0, broken);
    expect(report.failed).toBeGreaterThanOrEqual(1);
    expect(report.checked).toBe(report.due);
    expect(sentFor('other')).toEqual(['HEAD /v2/library/other/manifests/1']);
    const other = await watched('other');
    expect(other.lastError).not.toBeNull();
    // Due again at its next slot, not after the claim's five-minute lease.
    expect(Date.parse(other.nextCheck)).toBeLessThan(Date.now() + 2_000);
  }, 120_000);

  it('pauses the registry on a 429: a later invocation within the pause sends nothing upstream', async () => {
    await due(REPOS);
    upstream.clear();
    upstream.intercept({
      matches: (method, path) => method === 'HEAD' && path === '/v2/library/other/manifests/1',
      status: 429,
      // Long enough for a loaded machine's passes to stay inside it: the test never waits it out.
      headers: { 'retry-after': '60' },
      times: 1,
    });
    const throttled = await tick(0);
    expect(throttled.failed).toBeGreaterThanOrEqual(1);
    const view = await listing();
    const hub = view.registries.find((r) => r.registry === 'docker.io')!;
    expect(hub.pauseReason).toContain('429');
    expect(Date.parse(hub.pausedUntil!) - Date.now()).toBeGreaterThan(50_000);
    expect(view.watches.find((w) => w.name === nameOf('other'))!.lastError).toContain('paused');

    // The other container, which saw no 429 itself, learns of the pause from the table.
    upstream.clear();
    await vi.waitFor(
      async () => {
        const now = Date.now();
        expect((await listing()).watches.some((w) => Date.parse(w.nextCheck) <= now)).toBe(true);
      },
      { timeout: 15_000, interval: 100 },
    );
    const paused = await tick(1);
    expect(paused.due).toBeGreaterThanOrEqual(1);
    expect(paused.failed).toBe(paused.checked);
    expect(upstream.exchanges).toEqual([]);
    expect(Date.parse(hub.pausedUntil!)).toBeGreaterThan(Date.now());
    for (const w of (await listing()).watches) {
      if (w.lastError) expect(w.lastError).toContain('paused');
    }

    // Passes within the pause (nothing upstream) until every watch waits for the reset; then a
    // pass costs its two listings and nothing more.
    const pausedUntil = Date.parse(hub.pausedUntil!);
    await vi.waitFor(
      async () => {
        await tick(1);
        for (const w of (await listing()).watches) {
          expect(Date.parse(w.nextCheck)).toBeGreaterThanOrEqual(pausedUntil);
        }
      },
      { timeout: 15_000, interval: 200 },
    );
    expect(upstream.exchanges).toEqual([]);
    const catalog = (await watchers[1]!.runtime()).composition.context.catalog as DynamoCatalog;
    catalog.requests.reset();
    expect(await tick(1)).toMatchObject({ due: 0, checked: 0 });
    const idle = catalog.requests.byOperation();
    console.log(JSON.stringify({ idle }));
    expect(idle).toEqual({ Query: 2 });
    expect(upstream.exchanges).toEqual([]);
  }, 120_000);
});
