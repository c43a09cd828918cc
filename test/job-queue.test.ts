import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type QueueAttributeName,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createToken } from '../lib/auth/tokens.ts';
import type { HttpResponse } from '../lib/engine/http.ts';
import { HANDOVER_MARGIN_MS } from '../lib/engine/job-deadline.ts';
import { LEASE_MS } from '../lib/jobs/runner.ts';
import { lambdaRuntime } from '../lib/lambda/runtime.ts';
import type { JobRecord } from '../lib/ports/job-store.ts';
import {
  type AwsEmulators,
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from './support/aws-emulators.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { type SqsEventSource, startSqsEventSource } from './support/sqs-event-source.ts';
import { readAll } from './support/upstream-harness.ts';

/**
 * Durable jobs in the deployed shape, against the emulators: the api function's composition (in
 * this process) sends each job to an SQS queue on fauxqs (IMAGE_CACHE_JOB_QUEUE_URL), and a
 * stand-in for Lambda's event source mapping (test/support/sqs-event-source.ts) runs the real
 * worker handler for each message in a process of its own. The client that started a job leaves
 * at once and nobody follows or dispatches it again: whatever finishes it is the queue's doing.
 *
 * The queue is set up as infra/job-queue.ts sets it, scaled down: the worker's timeout below the
 * visibility timeout, and that past the job lease, so a redelivered message finds a dead
 * worker's lease run out (in the stack: 15 minutes, 90 minutes, and a minute).
 */
const WORKER_TIMEOUT_MS = 60_000;
const VISIBILITY_TIMEOUT_S = Math.ceil((LEASE_MS + 5_000) / 1000);
const MAX_RECEIVE_COUNT = 5;
const REPO = 'library/queued';
/** The big layer stops after this much until the worker that fetches it has been killed. */
const HELD_AFTER = 20 * 1024 * 1024;

afterAll(async () => {
  await (await lambdaRuntime().catch(() => undefined))?.composition.close();
  await stopAwsEmulators();
});

describe('jobs through the job queue (SQS) to the worker function', () => {
  let emulators: AwsEmulators;
  let registry: FakeRegistry;
  let adapters: ReturnType<typeof openAwsAdapters>;
  let sqs: SQSClient;
  let queueUrl = '';
  let deadLetterUrl = '';
  let source: SqsEventSource | undefined;
  let token = '';

  beforeAll(async () => {
    emulators = await awsEmulators();
    registry = await FakeRegistry.start();
    const names = freshResourceNames();
    adapters = openAwsAdapters(emulators, names);
    await adapters.catalog.createTable();
    await adapters.blobs.client.send(new CreateBucketCommand({ Bucket: names.bucket }));
    token = (await createToken(adapters.catalog, { scope: 'write' }, Date.now())).token;

    // fauxqs serves SQS on the same port as S3.
    const sqsEndpoint = emulators.s3.endpoint;
    sqs = new SQSClient({
      endpoint: sqsEndpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const id = randomBytes(4).toString('hex');
    deadLetterUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `jobs-dlq-${id}` })))
      .QueueUrl!;
    const deadLetterArn = (await attributes(deadLetterUrl, ['QueueArn'])).QueueArn;
    queueUrl = (
      await sqs.send(
        new CreateQueueCommand({
          QueueName: `jobs-${id}`,
          Attributes: {
            VisibilityTimeout: String(VISIBILITY_TIMEOUT_S),
            RedrivePolicy: JSON.stringify({
              deadLetterTargetArn: deadLetterArn,
              maxReceiveCount: MAX_RECEIVE_COUNT,
            }),
          },
        }),
      )
    ).QueueUrl!;

    // The stack's environments: every function's, and the fronts' with the queue.
    const functionEnv = {
      ...emulators.env,
      AWS_ENDPOINT_URL_SQS: sqsEndpoint,
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
      IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url.origin}`,
    };
    Object.assign(process.env, functionEnv, { IMAGE_CACHE_JOB_QUEUE_URL: queueUrl });
    source = startSqsEventSource({
      client: sqs,
      queueUrl,
      env: functionEnv,
      timeoutMs: WORKER_TIMEOUT_MS,
    });
  }, 120_000);

  afterAll(async () => {
    await source?.stop();
    sqs?.destroy();
    await registry?.close();
    adapters?.close();
  });

  async function attributes(url: string, names: QueueAttributeName[]) {
    const answer = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: names }),
    );
    return answer.Attributes ?? {};
  }

  /** Messages in the queue: waiting, and received but not deleted. */
  async function messagesIn(url: string): Promise<number> {
    const counts = await attributes(url, [
      'ApproximateNumberOfMessages',
      'ApproximateNumberOfMessagesNotVisible',
    ]);
    return (
      Number(counts.ApproximateNumberOfMessages) +
      Number(counts.ApproximateNumberOfMessagesNotVisible)
    );
  }

  /**
   * A `docker pull` through the api function that hands over at once (no time left to follow),
   * and leaves: the job's id from its last line.
   */
  async function startPull(tag: string): Promise<string> {
    const { router } = await lambdaRuntime();
    const response: HttpResponse = await router({
      method: 'POST',
      path: '/v1.47/images/create',
      query: new URLSearchParams({ fromImage: `docker.io/${REPO}`, tag }),
      headers: { authorization: `Bearer ${token}` },
      deadline: Date.now() + HANDOVER_MARGIN_MS,
    });
    expect(response.status).toBe(200);
    const body =
      typeof response.body === 'string'
        ? response.body
        : (await readAll(response.body as Readable)).toString('utf8');
    const last = JSON.parse(body.trim().split('\r\n').at(-1)!);
    expect(last.errorDetail.message).toContain('continues in the background');
    return last.job.id as string;
  }

  /** The job as the table holds it: read directly, so nothing here follows or re-dispatches it. */
  const jobOf = async (id: string): Promise<JobRecord> => (await adapters.catalog.getJob(id))!;
  const deliveriesOf = (jobId: string) =>
    source!.deliveries.filter((d) => JSON.parse(d.body).jobId === jobId);
  const ended = (jobId: string) => {
    const runs = deliveriesOf(jobId);
    expect(runs.at(-1)?.outcome).toBeDefined();
    return runs;
  };

  it('acknowledges a job that failed on a bad image: failed once, never delivered again', async () => {
    const image = await generateImage({ seed: 'queue-bad', layers: [{ files: [16 * 1024] }] });
    // The manifest names a layer the registry does not have: the image is broken upstream.
    registry.addBlob(image.configBlob.bytes);
    registry.addManifest(REPO, 'broken', image.bytes, image.mediaType);

    const jobId = await startPull('broken');
    const runs = await vi.waitFor(() => ended(jobId), { timeout: 60_000, interval: 250 });
    expect(
      runs.map((d) => [d.receiveCount, d.outcome]),
      runs.at(-1)?.output,
    ).toEqual([[1, 'deleted']]);
    expect(runs[0]!.result).toEqual({ batchItemFailures: [] });
    const job = await jobOf(jobId);
    expect(job.status).toBe('failed');
    expect(job.error?.message).toContain(image.layers[0]!.digest);
    // Deleted, so it cannot come back; and nothing went to the dead-letter queue.
    expect(await messagesIn(queueUrl)).toBe(0);
    expect(await messagesIn(deadLetterUrl)).toBe(0);
  });

  it('finishes a job whose worker was killed mid-upload, with no client waiting', async () => {
    const image: GeneratedImage = await generateImage({
      seed: 'queue-killed',
      layers: [{ files: [28 * 1024 * 1024], compression: 'none' }],
    });
    const layer = image.layers[0]!;
    for (const blob of image.blobs) registry.addBlob(blob.bytes!);
    registry.addManifest(REPO, '1', image.bytes, image.mediaType);
    let open!: () => void;
    const held = new Promise<void>((resolve) => {
      open = resolve;
    });
    // Once: the next worker's fetch gets the whole layer.
    registry.inject(registry.blobPath(REPO, layer.digest), {
      kind: 'slow',
      chunkBytes: 256 * 1024,
      delayMs: 1,
      gate: { afterBytes: HELD_AFTER, open: held },
    });

    try {
      const jobId = await startPull('1');
      // The worker has written two 8 MiB parts of the layer's multipart upload and waits on
      // the upstream for the rest: kill it there, as Lambda ends a crashed or timed-out run.
      await vi.waitFor(
        async () => {
          const downloading = (await jobOf(jobId)).progress.layers.find(
            (m) => m.status === 'Downloading' && (m.progressDetail?.current ?? 0) >= 16 * 1024 ** 2,
          );
          expect(downloading).toBeDefined();
        },
        { timeout: 60_000, interval: 250 },
      );
      const first = deliveriesOf(jobId)[0]!;
      first.child.kill('SIGKILL');
      expect((await jobOf(jobId)).status).toBe('running');

      const runs = await vi.waitFor(
        () => {
          expect(deliveriesOf(jobId)).toHaveLength(2);
          return ended(jobId);
        },
        { timeout: VISIBILITY_TIMEOUT_S * 1000 + WORKER_TIMEOUT_MS, interval: 500 },
      );
      // Delivered again only after the visibility timeout, and then the job ran to its end.
      expect(
        runs.map((d) => [d.receiveCount, d.outcome]),
        runs.at(-1)?.output,
      ).toEqual([
        [1, 'left'],
        [2, 'deleted'],
      ]);
      expect(runs[1]!.receivedAt - runs[0]!.receivedAt).toBeGreaterThanOrEqual(
        VISIBILITY_TIMEOUT_S * 1000 - 1_000,
      );
      expect(await jobOf(jobId)).toMatchObject({
        status: 'succeeded',
        result: { imageId: image.configBlob.digest, manifest: image.digest },
      });
      expect(await adapters.catalog.getTag(`docker.io/${REPO}`, '1')).toMatchObject({
        manifest: image.digest,
      });
      // The layer stored whole, under its digest (the killed upload left nothing behind it).
      const stored = await adapters.blobs.stat(layer.digest);
      expect(stored?.size).toBe(layer.size);
      // The upstream served the layer twice: the killed worker's fetch, then the whole of it.
      expect(registry.count(registry.blobPath(REPO, layer.digest), 'GET')).toBe(2);
      expect(await messagesIn(queueUrl)).toBe(0);
      expect(await messagesIn(deadLetterUrl)).toBe(0);
    } finally {
      open();
    }
  }, 240_000);
});
