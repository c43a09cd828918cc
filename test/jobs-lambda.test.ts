import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken } from '../lib/auth/tokens.ts';
import { parseServeArgs } from '../lib/config.ts';
import type { HttpRequest, HttpResponse } from '../lib/engine/http.ts';
import { HANDOVER_MARGIN_MS } from '../lib/engine/job-deadline.ts';
import { lambdaRuntime } from '../lib/lambda/runtime.ts';
import {
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from './support/aws-emulators.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { startDeadlineDoor } from './support/deadline-door.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { type LambdaLocal, startLambdaLocal } from './support/lambda-local.ts';
import { seedImage } from './support/seed-images.ts';
import { docker25Members, tarBuffer, writeTarFile } from './support/tarballs.ts';
import { tempDir } from './support/tmp.ts';
import { readAll } from './support/upstream-harness.ts';

/**
 * Jobs in the deployed shape: the api function's composition (lib/lambda/runtime.ts) on the
 * AWS backend (DynamoDB Local, fauxqs) dispatches through the Lambda dispatcher to a local
 * Invoke API, which runs functions/worker.ts in this process, as Lambda runs the worker
 * function. This file's process is one Lambda container for both functions.
 */
const WORKER = 'image-cache-worker';
const REPO = 'library/viaworker';

afterAll(async () => {
  await (await lambdaRuntime().catch(() => undefined))?.composition.close();
  await stopAwsEmulators();
});

describe('jobs through the Lambda dispatcher and the worker function', () => {
  let registry: FakeRegistry;
  let lambda: LambdaLocal;
  let adapters: ReturnType<typeof openAwsAdapters>;
  let image: GeneratedImage;
  let token = '';

  beforeAll(async () => {
    const emulators = await awsEmulators();
    registry = await FakeRegistry.start();
    image = await generateImage({ seed: 'jobs-lambda', layers: [{ files: [64 * 1024] }] });
    for (const blob of image.blobs) registry.addBlob(blob.bytes!);
    registry.addManifest(REPO, '1', image.bytes, image.mediaType);

    const names = freshResourceNames();
    adapters = openAwsAdapters(emulators, names);
    await adapters.catalog.createTable();
    await adapters.blobs.client.send(new CreateBucketCommand({ Bucket: names.bucket }));
    token = (await createToken(adapters.catalog, { scope: 'write' }, Date.now())).token;

    const { handler } = await import('../functions/worker.ts');
    lambda = await startLambdaLocal({ [WORKER]: handler });
    Object.assign(process.env, emulators.env, {
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url.origin}`,
      IMAGE_CACHE_WORKER_FUNCTION: WORKER,
      AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint,
    });
  }, 120_000);

  afterAll(async () => {
    await lambda?.close();
    await registry?.close();
    adapters?.close();
  });

  async function call(request: Omit<HttpRequest, 'headers'>): Promise<HttpResponse> {
    const { router } = await lambdaRuntime();
    return router({ ...request, headers: { authorization: `Bearer ${token}` } });
  }

  const text = async (response: HttpResponse) =>
    typeof response.body === 'string'
      ? response.body
      : (await readAll(response.body as Readable)).toString('utf8');

  it('hands a slow pull to the worker function, which finishes it', async () => {
    registry.inject(registry.blobPath(REPO, image.layers[0]!.digest), {
      kind: 'slow',
      chunkBytes: 8 * 1024,
      delayMs: 200,
    });
    const response = await call({
      method: 'POST',
      path: '/v1.47/images/create',
      query: new URLSearchParams({ fromImage: `docker.io/${REPO}`, tag: '1' }),
      deadline: Date.now() + HANDOVER_MARGIN_MS + 300,
    });
    expect(response.status).toBe(200);
    const last = JSON.parse((await text(response)).trim().split('\r\n').at(-1)!);
    expect(last.job.id).toMatch(/^[a-f0-9]{32}$/);
    expect(last.errorDetail.message).toContain('continues in the background');

    const waited = await call({
      method: 'GET',
      path: `/cache/jobs/${last.job.id}`,
      query: new URLSearchParams({ wait: '30' }),
    });
    const job = JSON.parse(String(waited.body));
    expect(job).toMatchObject({
      status: 'succeeded',
      result: { imageId: image.configBlob.digest, manifest: image.digest },
    });
    await lambda.idle();
    const invoked = lambda.invocations.filter((i) => i.functionName === WORKER);
    expect(invoked).toEqual([
      expect.objectContaining({
        type: 'Event',
        payload: { jobId: last.job.id },
        outcome: { result: { jobId: last.job.id, status: 'succeeded' } },
      }),
    ]);
    expect(await adapters.catalog.getTag(`docker.io/${REPO}`, '1')).toMatchObject({
      manifest: image.digest,
    });
  });

  it('answers a load commit past the deadline with 202, and the job loads the archive', async () => {
    const loaded = await generateImage({
      seed: 'jobs-lambda-load',
      layers: [{ files: [256 * 1024] }],
    });
    const tar = await tarBuffer(docker25Members([{ image: loaded, tags: ['loaded:1'] }]));
    const created = await call({
      method: 'POST',
      path: '/cache/loads',
      query: new URLSearchParams({ size: String(tar.length) }),
    });
    expect(created.status).toBe(201);
    const ticket = JSON.parse(String(created.body)) as { id: string; url: string; commit: string };
    const put = await fetch(ticket.url, { method: 'PUT', body: new Uint8Array(tar) });
    expect(put.status).toBe(200);

    const before = lambda.invocations.length;
    const commit = await call({
      method: 'POST',
      path: ticket.commit,
      query: new URLSearchParams(),
      body: Readable.from([]),
      // No time to follow: the answer is the job.
      deadline: Date.now() + HANDOVER_MARGIN_MS,
    });
    expect(commit.status).toBe(202);
    const pending = JSON.parse(String(commit.body));
    expect(commit.headers?.Location).toBe(`/cache/jobs/${pending.id}`);
    expect(pending).toMatchObject({ kind: 'load', request: { uploadId: ticket.id } });
    expect(['queued', 'running']).toContain(pending.status);

    const waited = await call({
      method: 'GET',
      path: `/cache/jobs/${pending.id}`,
      query: new URLSearchParams({ wait: '30' }),
    });
    expect(JSON.parse(String(waited.body))).toMatchObject({
      status: 'succeeded',
      result: { kind: 'load', messages: ['Loaded image: loaded:1'] },
    });
    await lambda.idle();
    expect(lambda.invocations.slice(before).map((i) => i.payload)).toEqual([{ jobId: pending.id }]);
    expect(await adapters.catalog.getTag('docker.io/library/loaded', '1')).toMatchObject({
      manifest: loaded.digest,
    });
  });

  it('hands a save export past the deadline to the worker function', async () => {
    await seedImage(adapters, {
      name: 'exported',
      layers: [['exported-layer', 64 * 1024]],
      tags: [['docker.io/library/exported', '1']],
      now: Date.now(),
    });
    const before = lambda.invocations.length;
    const save = () =>
      call({
        method: 'GET',
        path: '/v1.47/images/get',
        query: new URLSearchParams({ names: 'exported:1', redirect: '1' }),
        // No time to follow: the answer is the job.
        deadline: Date.now() + HANDOVER_MARGIN_MS,
      });
    const first = await save();
    expect(first.status).toBe(202);
    const pending = JSON.parse(String(first.body));
    expect(pending).toMatchObject({ kind: 'export', request: { names: ['exported:1'] } });

    const waited = await call({
      method: 'GET',
      path: pending.url,
      query: new URLSearchParams({ wait: '30' }),
    });
    expect(JSON.parse(String(waited.body))).toMatchObject({
      status: 'succeeded',
      result: { kind: 'export', url: expect.any(String) },
    });
    await lambda.idle();
    expect(lambda.invocations.slice(before).map((i) => i.payload)).toEqual([{ jobId: pending.id }]);
    // Exported now: the same save redirects at once, with no job.
    expect((await save()).status).toBe(307);
    expect(lambda.invocations.length).toBe(before + 1);
  });

  it('lets the project CLI wait for a load the server answered with 202', async () => {
    const loaded = await generateImage({
      seed: 'jobs-lambda-cli',
      layers: [{ files: [128 * 1024] }],
    });
    const work = await tempDir('jobs-lambda');
    const door = await startDeadlineDoor((await lambdaRuntime()).router, {
      followMs: 0,
      refuseDirectLoads: true,
    });
    try {
      const file = join(work.path, 'cli.tar');
      await writeTarFile(docker25Members([{ image: loaded, tags: ['cli-loaded:2'] }]), file);
      const { code, stdout } = await runCliAgainst(door.url, ['load', '-i', file], token);
      expect(code).toBe(0);
      expect(stdout).toBe('Loaded image: cli-loaded:2\n');
      // The commit answered 202 and the CLI waited on the job.
      expect(door.requests.filter((r) => r.startsWith('GET /cache/jobs/'))).not.toEqual([]);
    } finally {
      await door.close();
      await work.cleanup();
    }
    await lambda.idle();
    expect(lambda.invocations.at(-1)?.outcome).toMatchObject({ result: { status: 'succeeded' } });
  });
});

describe('IMAGE_CACHE_WORKER_FUNCTION', () => {
  const aws = { IMAGE_CACHE_BACKEND: 'aws', IMAGE_CACHE_BUCKET: 'b-u-c', IMAGE_CACHE_TABLE: 'tab' };
  it.each([
    [{ IMAGE_CACHE_WORKER_FUNCTION: ' image-cache-worker ' }, 'image-cache-worker'],
    [{ IMAGE_CACHE_WORKER_FUNCTION: '  ' }, undefined],
    [{}, undefined],
  ])('reads %j as worker function %j', (env, expected) => {
    expect(parseServeArgs([], { ...aws, ...env }).aws?.workerFunction).toBe(expected);
  });
});
