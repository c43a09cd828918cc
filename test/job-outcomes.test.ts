import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  JobRunner,
  LEASE_MS,
  MAX_JOB_LOAD_MESSAGES,
  MAX_JOB_TEXT_CHARS,
} from '../lib/jobs/runner.ts';
import { DEFAULT_LOAD_LIMITS } from '../lib/load/tar-reader.ts';
import type { Catalog, JobRecord } from '../lib/ports/catalog.ts';
import { type Clock, systemClock } from '../lib/ports/clock.ts';
import { type PresignedUploads, presignedUploadsOf } from '../lib/ports/presigned-uploads.ts';
import { PullService } from '../lib/pull.ts';
import { HttpUpstream } from '../lib/registry/http-upstream.ts';
import {
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from './support/aws-emulators.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { docker25Members, tarBuffer } from './support/tarballs.ts';

/**
 * How a job ends, on the AWS backend's emulators (DynamoDB Local, fauxqs), with the runner a
 * worker runs: what it stores stays within one DynamoDB item, a finish that fails does not
 * leave the job running, and a load's upload goes only once the job's end is recorded, so a
 * re-run after a lost finish loads it again rather than answering "not found".
 */
const DAY = 24 * 3600_000;

afterAll(async () => {
  await stopAwsEmulators();
});

/** The catalog with its own finishJob in front; every other method is the catalog's. */
function withFinish(catalog: Catalog, finishJob: Catalog['finishJob']): Catalog {
  return new Proxy(catalog, {
    get(target, property) {
      if (property === 'finishJob') return finishJob;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('job outcomes on DynamoDB Local', () => {
  let adapters: ReturnType<typeof openAwsAdapters>;
  let uploads: PresignedUploads;
  let bucket: string;
  let image: GeneratedImage;

  beforeAll(async () => {
    const emulators = await awsEmulators();
    const names = freshResourceNames();
    bucket = names.bucket;
    adapters = openAwsAdapters(emulators, names);
    await adapters.catalog.createTable();
    await adapters.blobs.client.send(new CreateBucketCommand({ Bucket: bucket }));
    uploads = presignedUploadsOf(adapters.blobs)!;
    image = await generateImage({ seed: 'job-outcomes', layers: [{ files: [16 * 1024] }] });
  }, 120_000);

  afterAll(() => adapters?.close());

  function runner(catalog: Catalog = adapters.catalog, clock: Clock = systemClock): JobRunner {
    const { blobs } = adapters;
    const upstream = new HttpUpstream({ registries: new Map(), clock });
    const pulls = new PullService({ catalog, blobs, upstream, clock, tagTtlMs: 0, concurrency: 1 });
    return new JobRunner({
      catalog,
      jobStore: catalog,
      blobs,
      pulls,
      clock,
      loadLimits: DEFAULT_LOAD_LIMITS,
    });
  }

  /** Uploads a tarball of `image` with `tags` and queues its load job, as the commit route does. */
  async function queueLoad(tags: string[]): Promise<{ job: JobRecord; uploadId: string }> {
    const tar = await tarBuffer(docker25Members([{ image, tags }]));
    const ticket = await uploads.createUpload(tar.length);
    if (ticket.kind !== 'single') throw new Error('expected a single PUT upload');
    const put = await fetch(ticket.url, { method: 'PUT', body: new Uint8Array(tar) });
    expect(put.status).toBe(200);
    const uploadId = await uploads.completeUpload(ticket.id, undefined);
    const now = Date.now();
    const { job, created } = await adapters.catalog.createOrJoinJob({
      id: randomBytes(16).toString('hex'),
      kind: 'load',
      key: `load|${uploadId}`,
      request: { kind: 'load', uploadId },
      now,
      expiresAt: now + DAY,
    });
    expect(created).toBe(true);
    return { job, uploadId };
  }

  async function uploadsLeft(): Promise<string[]> {
    const listed = await adapters.blobs.client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: 'staging/uploads/' }),
    );
    return (listed.Contents ?? []).map((o) => o.Key!);
  }

  it('finishes a load of many tags with its result cut to what one item holds', async () => {
    // Lines of about 640 bytes (a long registry, repository and tag): 700 of them are more
    // than the 400 KB a DynamoDB item holds.
    const registry = ['a', 'b', 'c', 'd'].map((c) => c.repeat(62)).join('.');
    const repository = `${registry}/many/${'r'.repeat(240)}`;
    const tags = Array.from(
      { length: 700 },
      (_, i) => `${repository}:${String(i).padStart(4, '0')}${'t'.repeat(124)}`,
    );
    const { job } = await queueLoad(tags);
    const ended = await runner().run(job.id);
    expect(ended).toMatchObject({ status: 'succeeded' });
    const messages = ended?.result?.kind === 'load' ? ended.result.messages : [];
    expect(messages).toHaveLength(MAX_JOB_LOAD_MESSAGES + 1);
    expect(messages.slice(0, 2)).toEqual([`Loaded image: ${tags[0]}`, `Loaded image: ${tags[1]}`]);
    expect(messages.at(-1)).toBe(`... and ${700 - MAX_JOB_LOAD_MESSAGES} more images`);
    // Only the record is cut: every tag was loaded.
    expect(await adapters.catalog.getTag(repository, tags.at(-1)!.split(':')[1]!)).toMatchObject({
      manifest: image.digest,
    });
    expect(await uploadsLeft()).toEqual([]);
  }, 120_000);

  it('fails a load whose archive names a huge invalid tag with a message cut to 1 KB', async () => {
    const { job } = await queueLoad([`bad tag ${'x'.repeat(500_000)}`]);
    const ended = await runner().run(job.id);
    expect(ended).toMatchObject({ status: 'failed', error: { status: 400 } });
    const message = ended?.error?.message ?? '';
    expect(message).toMatch(/^manifest\.json.*invalid tag "bad tag xxx/);
    expect(message.length).toBeLessThanOrEqual(MAX_JOB_TEXT_CHARS);
    expect(message.endsWith('…')).toBe(true);
    expect(await uploadsLeft()).toEqual([]);
  });

  it('ends a job as failed when recording its end fails once, and frees its key', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const { job, uploadId } = await queueLoad(['finish-fails:1']);
      let calls = 0;
      const catalog = withFinish(adapters.catalog, async (...args) => {
        // What DynamoDB answered to a result past its item size, before results were bounded.
        if (calls++ === 0) throw new Error('ValidationException: Item size exceeded');
        return adapters.catalog.finishJob(...args);
      });
      const ended = await runner(catalog).run(job.id);
      expect(calls).toBe(2);
      expect(ended).toMatchObject({
        status: 'failed',
        error: { status: 500, code: 'INTERNAL', message: expect.stringMatching(/not be recorded/) },
      });
      expect(ended?.lease).toBeUndefined();
      // Not joined to a job stuck in 'running': the next commit of the upload starts afresh.
      const next = await adapters.catalog.createOrJoinJob({
        id: randomBytes(16).toString('hex'),
        kind: 'load',
        key: `load|${uploadId}`,
        request: { kind: 'load', uploadId },
        now: Date.now(),
        expiresAt: Date.now() + DAY,
      });
      expect(next.created).toBe(true);
      // An end was recorded, so the upload went.
      expect(await uploadsLeft()).toEqual([]);
      expect(logged).toHaveBeenCalledWith(
        expect.stringMatching(/recording the end of job/),
        expect.any(Error),
      );
    } finally {
      logged.mockRestore();
    }
  });

  it('keeps a load’s upload until its end is recorded, so a re-run after a lost finish loads it', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const { job, uploadId } = await queueLoad(['rerun:1']);
      const atFinish: string[][] = [];
      const unreachable = withFinish(adapters.catalog, async () => {
        atFinish.push(await uploadsLeft());
        throw new Error('the catalog is out of reach');
      });
      // Neither the end nor the fallback failure could be recorded: the job stays running.
      await expect(runner(unreachable).run(job.id)).rejects.toThrow(/out of reach/);
      expect((await adapters.catalog.getJob(job.id))?.status).toBe('running');
      const object = adapters.blobs.keys.upload(uploadId);
      expect(atFinish).toEqual([[object], [object]]);
      expect(await uploadsLeft()).toEqual([object]);

      // Another worker takes the job over once the lease ran out, and finds the upload.
      const recorded: string[][] = [];
      const reachable = withFinish(adapters.catalog, async (...args) => {
        recorded.push(await uploadsLeft());
        return adapters.catalog.finishJob(...args);
      });
      const later: Clock = { now: () => Date.now() + LEASE_MS + 1_000 };
      const again = await runner(reachable, later).run(job.id);
      expect(again).toMatchObject({
        status: 'succeeded',
        result: { kind: 'load', messages: ['Loaded image: rerun:1'] },
      });
      // Still there when the end was recorded, gone after.
      expect(recorded).toEqual([[object]]);
      expect(await uploadsLeft()).toEqual([]);
    } finally {
      logged.mockRestore();
    }
  });
});
