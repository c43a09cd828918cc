import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GiB, MiB } from '../lib/adapters/s3/part-size.ts';
import { S3BlobStore, type S3BlobStoreOptions } from '../lib/adapters/s3-blob-store.ts';
import { type Digest, digestHex, sha256 } from '../lib/digest.ts';
import {
  DigestMismatchError,
  ImageCacheError,
  InvalidArgumentError,
  NotFoundError,
} from '../lib/errors.ts';
import {
  blobStoreConformance,
  chunked,
  failingSource,
  listAll,
  readAll,
} from './conformance/blob-store-suite.ts';
import { commandNames, recordCommands, type SentCommand } from './support/s3-commands.ts';
import { type S3TestServer, startS3Server } from './support/s3-server.ts';

let server: S3TestServer;
beforeAll(async () => {
  server = await startS3Server();
});
afterAll(async () => {
  await server?.stop();
});

blobStoreConformance('S3BlobStore (fauxqs)', async () => {
  const bucket = await server.createBucket();
  const client = server.client();
  return {
    store: new S3BlobStore({ client, bucket }),
    cleanup: async () => {
      await server.removeBucket(bucket);
      client.destroy();
    },
  };
});

describe('S3BlobStore specifics', () => {
  let bucket: string;
  let client: S3Client;
  let sent: SentCommand[];
  let store: S3BlobStore;
  const open = (options: Partial<S3BlobStoreOptions> = {}) =>
    new S3BlobStore({
      client,
      bucket,
      partSize: 5 * MiB,
      unknownSizePartSize: 5 * MiB,
      ...options,
    });

  beforeEach(async () => {
    bucket = await server.createBucket();
    client = server.client();
    sent = recordCommands(client);
    store = open();
  });
  afterEach(async () => {
    await server.removeBucket(bucket);
    client.destroy();
  });

  /** Every key in the bucket, read with a raw request rather than through the store. */
  const bucketKeys = async () => {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (page.Contents ?? []).map((o) => o.Key);
  };

  it('uploads a blob larger than one part as multipart parts to its final key', async () => {
    const bytes = randomBytes(12 * MiB);
    const digest = sha256(bytes);
    expect(await store.write(chunked(bytes), { digest, size: bytes.length })).toEqual({
      digest,
      size: bytes.length,
    });
    const key = `blobs/sha256/${digestHex(digest)}`;
    const onKey = (k: string) => sent.filter((s) => s.input.Key === k);
    expect(commandNames(onKey(key))).toEqual([
      'CreateMultipartUploadCommand',
      'UploadPartCommand',
      'UploadPartCommand',
      'UploadPartCommand',
      'CompleteMultipartUploadCommand',
    ]);
    // Beside it, the upload's state for a later write to resume: looked for, kept while parts
    // arrive, removed once complete (s3-multipart-resume.test.ts).
    const state = commandNames(onKey(`staging/multipart/${digestHex(digest)}.json`));
    expect(state[0]).toBe('GetObjectCommand');
    expect(state.slice(1, -1).every((name) => name === 'PutObjectCommand')).toBe(true);
    expect(state.at(-1)).toBe('DeleteObjectCommand');
    expect(onKey(key).length + state.length).toBe(sent.length);
    const parts = sent.filter((s) => s.command === 'UploadPartCommand');
    expect(parts.map((p) => p.input.ContentLength)).toEqual([5 * MiB, 5 * MiB, 2 * MiB]);
    expect(await bucketKeys()).toEqual([key]);
    expect(await store.stat(digest)).toEqual({ digest, size: bytes.length });
    expect((await readAll(await store.read(digest))).equals(bytes)).toBe(true);
    const middle = await readAll(
      await store.read(digest, { start: 5 * MiB - 10, end: 5 * MiB + 9 }),
    );
    expect(middle.equals(bytes.subarray(5 * MiB - 10, 5 * MiB + 10))).toBe(true);
  });

  it('sends a blob smaller than one part as one PutObject', async () => {
    const bytes = randomBytes(5 * MiB - 1);
    const digest = sha256(bytes);
    await store.write(chunked(bytes), { digest });
    expect(commandNames(sent)).toEqual(['PutObjectCommand']);
    expect(sent[0]?.input.Key).toBe(`blobs/sha256/${digestHex(digest)}`);
  });

  it('shows nothing at the key while a multipart upload is still streaming', async () => {
    const bytes = randomBytes(12 * MiB);
    const digest = sha256(bytes);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const source = Readable.from(
      (async function* () {
        yield bytes.subarray(0, 11 * MiB);
        await gate;
        yield bytes.subarray(11 * MiB);
      })(),
    );
    const writing = store.write(source, { digest });
    while (commandNames(sent).filter((n) => n === 'UploadPartCommand').length < 2) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(await store.stat(digest)).toBeUndefined();
    // Only the upload's state is stored so far, never a blob.
    expect(await bucketKeys()).toEqual([`staging/multipart/${digestHex(digest)}.json`]);
    release();
    expect(await writing).toEqual({ digest, size: bytes.length });
  });

  const bigBody = randomBytes(12 * MiB);
  const bigDigest = sha256(bigBody);
  const reset = new Error('ECONNRESET (test)');
  it.each<
    [string, () => Readable, { digest?: Digest; size?: number }, Error | typeof DigestMismatchError]
  >([
    ['a digest mismatch', () => chunked(bigBody), { digest: sha256('other') }, DigestMismatchError],
    [
      'a body longer than its size',
      () => chunked(bigBody),
      { digest: bigDigest, size: 11 * MiB },
      DigestMismatchError,
    ],
    [
      'a body shorter than its size',
      () => chunked(bigBody),
      { digest: bigDigest, size: 13 * MiB },
      DigestMismatchError,
    ],
    [
      'a source failing after two parts (no digest, so nothing to resume)',
      () => failingSource(bigBody.subarray(0, 11 * MiB), reset),
      {},
      reset,
    ],
    [
      'a digest mismatch with no digest expected (staging)',
      () => chunked(bigBody),
      { size: 11 * MiB },
      DigestMismatchError,
    ],
  ])(
    'aborts the multipart upload on %s and leaves no object and no pending upload',
    async (_, body, expected, failure) => {
      await expect(store.write(body(), expected)).rejects.toSatisfy((error) =>
        failure instanceof Error ? error === failure : error instanceof failure,
      );
      const created = sent.filter((s) => s.command === 'CreateMultipartUploadCommand');
      expect(created).toHaveLength(1);
      const uploadId = created[0]?.output?.UploadId as string;
      const key = created[0]?.input.Key as string;
      expect(key).toEqual(
        expected.digest
          ? `blobs/sha256/${digestHex(expected.digest)}`
          : expect.stringMatching(/^staging\//),
      );
      expect(commandNames(sent)).not.toContain('CompleteMultipartUploadCommand');
      const aborts = sent.filter((s) => s.command === 'AbortMultipartUploadCommand');
      expect(aborts.map((a) => a.input.UploadId)).toEqual([uploadId]);
      // The abort came after every part request had settled, so no part can outlive it.
      expect(commandNames(sent).at(-1)).toBe('AbortMultipartUploadCommand');
      // fauxqs lacks ListMultipartUploads; a part sent to the upload proves it is gone.
      await expect(
        client.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: 9,
            Body: 'x',
          }),
        ),
      ).rejects.toMatchObject({ name: 'NoSuchUpload' });
      expect(await bucketKeys()).toEqual([]);
      expect(await store.stat(bigDigest)).toBeUndefined();
      await expect(store.read(bigDigest)).rejects.toBeInstanceOf(NotFoundError);
    },
  );

  it('stages a large write without a digest, copies it into place and removes the staging object', async () => {
    const bytes = randomBytes(12 * MiB);
    const stored = await store.write(chunked(bytes));
    expect(stored).toEqual({ digest: sha256(bytes), size: bytes.length });
    const key = `blobs/sha256/${digestHex(stored.digest)}`;
    const created = sent.find((s) => s.command === 'CreateMultipartUploadCommand');
    const stagingKey = created?.input.Key as string;
    expect(stagingKey).toMatch(/^staging\/[0-9a-f-]{36}$/);
    const copy = sent.find((s) => s.command === 'CopyObjectCommand');
    expect(copy?.input).toMatchObject({ Key: key, CopySource: `${bucket}/${stagingKey}` });
    const removal = sent.find((s) => s.command === 'DeleteObjectsCommand');
    expect(removal?.input).toMatchObject({ Delete: { Objects: [{ Key: stagingKey }] } });
    expect(await bucketKeys()).toEqual([key]);
    expect((await readAll(await store.read(stored.digest))).equals(bytes)).toBe(true);
  });

  it('writes a small blob without a digest straight to its key: it was hashed before the put', async () => {
    const bytes = randomBytes(1000);
    const { digest } = await store.write(chunked(bytes, 100));
    expect(commandNames(sent)).toEqual(['PutObjectCommand']);
    expect(sent[0]?.input.Key).toBe(`blobs/sha256/${digestHex(digest)}`);
  });

  it('hands out a presigned GET URL that plain fetch can read', async () => {
    const bytes = randomBytes(70_000);
    const { digest } = await store.write(chunked(bytes));
    const presigned = await store.presignedGetUrl(digest, 60);
    expect(presigned.expiresIn).toBe(60);
    const url = new URL(presigned.url);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('60');
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    expect(url.pathname).toBe(`/${bucket}/blobs/sha256/${digestHex(digest)}`);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
    const absent = await fetch((await store.presignedGetUrl(sha256('never written'), 60)).url);
    expect(absent.status).toBe(404);
    for (const bad of [0, -1, 1.5, 8 * 24 * 3600]) {
      await expect(store.presignedGetUrl(digest, bad)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
  });

  it('deletes many blobs in batches of 1,000, absent ones included', async () => {
    const stored = await Promise.all(
      Array.from({ length: 5 }, () => store.write(chunked(randomBytes(100)))),
    );
    const absent = Array.from({ length: 1500 }, (_, i) => sha256(`absent ${i}`));
    sent.length = 0;
    await store.deleteMany([...stored.slice(0, 3).map((b) => b.digest), ...absent]);
    const batches = sent.filter((s) => s.command === 'DeleteObjectsCommand');
    expect(batches.map((b) => (b.input.Delete as { Objects: unknown[] }).Objects.length)).toEqual([
      1000, 503,
    ]);
    expect((await listAll(store)).map((b) => b.digest).sort()).toEqual(
      stored
        .slice(3)
        .map((b) => b.digest)
        .sort(),
    );
    await store.deleteMany([]);
  });

  it('lists across pages and skips keys that are not blobs', async () => {
    const paged = open({ listPageSize: 2 });
    const stored = await Promise.all(
      Array.from({ length: 5 }, () => paged.write(chunked(randomBytes(10)))),
    );
    for (const Key of [
      'blobs/sha256/README',
      `blobs/sha256/${'A'.repeat(64)}`,
      'staging/x',
      'other',
    ]) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: 'junk' }));
    }
    sent.length = 0;
    const listed = await listAll(paged);
    expect(listed.map((b) => b.digest).sort()).toEqual(stored.map((b) => b.digest).sort());
    const pages = sent.filter((s) => s.command === 'ListObjectsV2Command');
    expect(pages.length).toBeGreaterThanOrEqual(3);
    expect(pages.every((p) => p.input.MaxKeys === 2 && p.input.Prefix === 'blobs/sha256/')).toBe(
      true,
    );
    expect(pages.slice(1).every((p) => typeof p.input.ContinuationToken === 'string')).toBe(true);
  });

  it('keeps everything under the prefix, apart from stores without it', async () => {
    const prefixed = open({ prefix: '/team/cache/' });
    const { digest } = await prefixed.write(chunked(randomBytes(100)));
    expect(await bucketKeys()).toEqual([`team/cache/blobs/sha256/${digestHex(digest)}`]);
    expect(await listAll(store)).toEqual([]);
    expect(await store.stat(digest)).toBeUndefined();
    expect((await listAll(prefixed)).map((b) => b.digest)).toEqual([digest]);
  });

  it('sweeps staging objects left by a crashed writer once they are old enough, not uploads', async () => {
    const crashed = `staging/${randomUUID()}`;
    const upload = `staging/uploads/${randomUUID()}.tar`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: crashed, Body: 'xy' }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: upload, Body: 'tar' }));
    const { digest } = await store.write(chunked(randomBytes(10)));
    expect(await store.sweepStaging(3_600_000)).toEqual({ files: 0, bytes: 0 });
    expect(await store.sweepStaging(0, Date.now() + 5_000)).toEqual({ files: 1, bytes: 2 });
    expect((await bucketKeys()).sort()).toEqual([`blobs/sha256/${digestHex(digest)}`, upload]);
  });

  // Against fauxqs: shows our adapter's requests go through with the checksums AWS's SDK sends
  // by default, not that S3 validates them the same way.
  it('writes and reads with the SDK default checksum settings (those used on AWS)', async () => {
    const defaults = server.client({ checksums: 'WHEN_SUPPORTED' });
    try {
      const aws = new S3BlobStore({ client: defaults, bucket, partSize: 5 * MiB });
      const bytes = randomBytes(11 * MiB);
      const { digest } = await aws.write(chunked(bytes), { size: bytes.length });
      expect((await readAll(await aws.read(digest))).equals(bytes)).toBe(true);
      const slice = await readAll(await aws.read(digest, { start: 1, end: 3 }));
      expect(slice.equals(bytes.subarray(1, 4))).toBe(true);
    } finally {
      defaults.destroy();
    }
  });

  it('turns vendor errors into domain errors that name the S3 code', async () => {
    const missing = open({ bucket: 'no-such-bucket' });
    const digest = sha256('x');
    await expect(missing.read(digest)).rejects.toSatisfy(
      (error) =>
        error instanceof ImageCacheError &&
        error.code === 'INTERNAL' &&
        error.message.includes('NoSuchBucket'),
    );
    await expect(missing.write(chunked(Buffer.from('x')))).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringContaining('NoSuchBucket'),
    });
    await expect(store.read(digest, { start: 0, end: 0 })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('refuses part sizes outside what S3 accepts', () => {
    expect(() => open({ partSize: 5 * MiB - 1 })).toThrow(InvalidArgumentError);
    expect(() => open({ unknownSizePartSize: 6 * GiB })).toThrow(InvalidArgumentError);
    expect(() => open({ uploadConcurrency: 0 })).toThrow(InvalidArgumentError);
    expect(() => open({ prefix: 'a/../b' })).toThrow(InvalidArgumentError);
  });
});
