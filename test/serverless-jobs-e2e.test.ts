import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Digest, digestHex } from '../lib/digest.ts';
import type { lambdaRuntime } from '../lib/lambda/runtime.ts';
import {
  type ApiGatewayLocal,
  type HttpApiHandler,
  startApiGatewayLocal,
} from './support/api-gateway-local.ts';
import type { DockerResult } from './support/docker-cli.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { type LambdaLocal, startLambdaLocal } from './support/lambda-local.ts';
import {
  type ServerlessStack,
  startServerlessStack,
  stopServerlessProcess,
} from './support/serverless-stack.ts';

/**
 * A pull longer than the front door, in the deployed shape, judged by the real docker CLI:
 * docker -> the local API Gateway (timeout lowered to 12 s; the handler's Lambda context counts
 * down the same 12 s, so httpApiDeadline puts the deadline 8 s in and the route hands over 2 s
 * before it) -> functions/api.ts on S3 + DynamoDB (fauxqs, DynamoDB Local), which starts the
 * pull as a job through the Lambda Invoke API (test/support/lambda-local.ts) ->
 * functions/worker.ts, which pulls from a FakeRegistry whose second layer trickles in and then
 * waits for the test to let it finish. Holding it (rather than guessing how slow is slow
 * enough) keeps the timing the same on a loaded machine: the first pull always hands over, and
 * the job ends while a later pull follows it.
 */
afterAll(stopServerlessProcess);

const WORKER = 'image-cache-worker';
const GATEWAY_TIMEOUT_MS = 12_000;
/** How long a pull follows the job: httpApiDeadline's and the route's margins off the timeout. */
const FOLLOW_MS = GATEWAY_TIMEOUT_MS - 4_000 - 2_000;
const REPO = 'slow/app';
/** At most this many pulls after the first; the job ends during the first of them. */
const MAX_JOINS = 5;

describe('serverless jobs: docker pull past the API Gateway timeout', () => {
  let stack: ServerlessStack;
  let upstream: FakeRegistry;
  let lambda: LambdaLocal;
  let gateway: ApiGatewayLocal;
  let image: GeneratedImage;
  let reference = '';
  let jobId = '';
  /** Told when a `POST /images/create` reaches the api function. */
  let onPull: (() => void) | undefined;
  let openSlowLayer: () => void = () => undefined;
  let workerRuntime: typeof lambdaRuntime;
  let quickLayer: GeneratedImage['layers'][number];
  let slowLayer: GeneratedImage['layers'][number];

  beforeAll(async () => {
    upstream = await FakeRegistry.start();
    image = await generateImage({
      seed: 'sls-jobs',
      format: 'docker',
      layers: [{ files: [64 * 1024] }, { files: [1_200_000] }],
    });
    [quickLayer, slowLayer] = image.layers as [typeof quickLayer, typeof slowLayer];
    for (const blob of image.blobs) upstream.addBlob(blob.bytes!);
    upstream.addManifest(REPO, '1', image.bytes, image.mediaType);
    reference = `${upstream.host}/${REPO}:1`;
    const held = new Promise<void>((resolve) => {
      openSlowLayer = resolve;
    });
    // The first layer comes at once (a line docker prints before the hand-over); the second
    // at about 1.6 MB/s up to 640 KiB, then not another byte until the test says.
    upstream.inject(upstream.blobPath(REPO, slowLayer.digest), {
      kind: 'slow',
      chunkBytes: 64 * 1024,
      delayMs: 40,
      gate: { afterBytes: 640 * 1024, open: held },
    });

    // Two functions, two containers: the worker gets a module graph (so a composition, job
    // signals and blob fetcher) of its own, and the api follows the job through the table.
    const { handler: api } = (await import('../functions/api.ts')) as { handler: HttpApiHandler };
    vi.resetModules();
    const { handler: worker } = await import('../functions/worker.ts');
    workerRuntime = (await import('../lib/lambda/runtime.ts')).lambdaRuntime;
    lambda = await startLambdaLocal({ [WORKER]: worker });
    stack = await startServerlessStack('serverless-jobs-e2e', {
      registries: { [upstream.host]: upstream.url.origin },
      env: { IMAGE_CACHE_WORKER_FUNCTION: WORKER, AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint },
    });
    gateway = await startApiGatewayLocal({
      handler: (event, context) => {
        if (event.rawPath.endsWith('/images/create')) onPull?.();
        return api(event, context);
      },
      timeoutMs: GATEWAY_TIMEOUT_MS,
    });
    // A warm container: the cold start is not what this file measures.
    expect((await cli(['image', 'ls'])).code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    // A failed test must not leave the worker waiting on the upstream forever.
    openSlowLayer();
    await gateway?.close();
    await lambda?.close();
    if (lambda && workerRuns().length > 0) await (await workerRuntime()).composition.close();
    await stack?.close();
    await upstream?.close();
  });

  const cli = (args: string[], token?: string) => stack.docker(gateway.hostPort, args, token);
  const short = (digest: Digest) => digestHex(digest).slice(0, 12);
  const handedOver = (result: DockerResult) =>
    /continues in the background as job ([a-f0-9]{32})/.exec(result.stderr)?.[1];
  const pullsAnswered = () =>
    gateway.invocations.filter((i) => i.rawPath.endsWith('/images/create'));
  const workerRuns = () => lambda.invocations.filter((i) => i.functionName === WORKER);

  it('hands the pull over before the gateway times out, naming the job', async () => {
    const first = await cli(['pull', reference]);
    expect(first.code).not.toBe(0);
    expect(first.stdout).toContain(`1: Pulling from ${upstream.host}/${REPO}`);
    // The progress so far. Without a terminal docker prints no Downloading bars, and a
    // follower polling the job sees each layer's latest state, so: the quick layer's end.
    expect(first.stdout).toContain(`${short(quickLayer.digest)}: Pull complete`);
    expect(first.stdout).not.toContain(`${short(slowLayer.digest)}: Pull complete`);
    jobId = handedOver(first) ?? '';
    expect(jobId).toMatch(/^[a-f0-9]{32}$/);
    expect(first.stderr).toContain('run the same docker pull again');
    expect(first.stderr).toContain(`/cache/jobs/${jobId}?wait=20`);
    // The api answered (200, a stream ending in the errorDetail), not the gateway's 503.
    expect(pullsAnswered()).toEqual([
      expect.objectContaining({ status: 200, invoked: true, ms: expect.any(Number) }),
    ]);
    expect(pullsAnswered()[0]!.ms).toBeGreaterThanOrEqual(FOLLOW_MS - 500);
    expect(pullsAnswered()[0]!.ms).toBeLessThan(GATEWAY_TIMEOUT_MS - 2_000);
    expect(workerRuns().map((i) => i.payload)).toEqual([{ jobId }]);
  });

  it('joins the same job with the next docker pull, which ends with the image', async () => {
    // The slow layer finishes a second after the next pull started following the job.
    onPull = () => {
      onPull = undefined;
      setTimeout(openSlowLayer, 1_000);
    };
    const results: DockerResult[] = [];
    for (let attempt = 1; attempt <= MAX_JOINS; attempt++) {
      const result = await cli(['pull', reference]);
      results.push(result);
      if (result.code === 0) break;
      // A pull still unfinished at its deadline names the same job again.
      expect(handedOver(result)).toBe(jobId);
    }
    const last = results.at(-1)!;
    // One job, one worker run, one upstream fetch of everything across all the pulls.
    expect(workerRuns().map((i) => i.payload)).toEqual([{ jobId }]);
    expect(upstream.count(upstream.manifestPath(REPO, '1'), 'GET')).toBe(1);
    for (const blob of image.blobs) {
      expect(upstream.count(upstream.blobPath(REPO, blob.digest), 'GET')).toBe(1);
    }

    expect(last.stderr).toBe('');
    expect(last.code).toBe(0);
    for (const layer of image.layers) {
      expect(last.stdout).toContain(`${short(layer.digest)}: Pull complete`);
    }
    expect(last.stdout).toContain(`Digest: ${image.digest}`);
    expect(last.stdout).toContain(`Status: Downloaded newer image for ${reference}`);
    expect(gateway.invocations.filter((i) => i.status === 503)).toEqual([]);
  });

  it('answers the job as succeeded, to a token only, and serves the image', async () => {
    const url = `${gateway.url}/cache/jobs/${jobId}?wait=20`;
    const waited = await fetch(url, {
      headers: { Authorization: `Bearer ${stack.tokens.read}` },
    });
    expect(waited.status).toBe(200);
    expect(await waited.json()).toMatchObject({
      id: jobId,
      kind: 'pull',
      status: 'succeeded',
      result: { imageId: image.configBlob.digest, manifest: image.digest },
    });
    expect((await fetch(url)).status).toBe(401);

    const ls = await cli(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']);
    expect(ls.code).toBe(0);
    expect(ls.stdout.trim().split('\n')).toEqual([
      `${upstream.host}/${REPO}:1 ${short(image.configBlob.digest)}`,
    ]);
    const inspect = await cli(['image', 'inspect', '--format', '{{.Id}}', reference]);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout.trim()).toBe(image.configBlob.digest);
  });

  it('still fails an unknown tag fast, with Docker not-found wording and no hand-over', async () => {
    const result = await cli(['pull', `${upstream.host}/${REPO}:nope`]);
    expect(result.code).not.toBe(0);
    // As dockerd words it: "manifest for <name>:<tag> not found: manifest unknown: ...".
    expect(result.stderr).toContain(`manifest for ${upstream.host}/${REPO}:nope not found`);
    expect(result.stderr).not.toContain('continues in the background');
    // Its own 404, well before the route would have handed over.
    const answered = pullsAnswered().at(-1)!;
    expect(answered.status).toBe(404);
    expect(answered.ms).toBeLessThan(FOLLOW_MS);
  });
});
