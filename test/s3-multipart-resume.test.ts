/**
 * A blob's multipart upload outlives the write that started it (issue 13): a write that dies
 * halfway leaves its upload and a state object in the bucket, and the next write of the same
 * digest uploads only what is missing. All against fauxqs; the failing sources are streams the
 * tests control, and the UploadPart requests are counted with SDK middleware.
 */
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MiB } from '../lib/adapters/s3/part-size.ts';
import { parseUploadState, type UploadState } from '../lib/adapters/s3/upload-state.ts';
import { S3BlobStore } from '../lib/adapters/s3-blob-store.ts';
import { digestHex, sha256 } from '../lib/digest.ts';
import { DigestMismatchError, ImageCacheError } from '../lib/errors.ts';
import { chunked, failingSource, readAll } from './conformance/blob-store-suite.ts';
import { commandNames, recordCommands, type SentCommand } from './support/s3-commands.ts';
import { type S3TestServer, startS3Server } from './support/s3-server.ts';

let server: S3TestServer;
beforeAll(async () => {
  server = await startS3Server();
});
afterAll(async () => {
  await server?.stop();
});

const PART = 5 * MiB;
/** Six parts: five of 5 MiB and one of 2 MiB. */
const bytes = randomBytes(5 * PART + 2 * MiB);
const digest = sha256(bytes);
const expected = { digest, size: bytes.length };
const blobKey = `blobs/sha256/${digestHex(digest)}`;
const stateKey = `staging/multipart/${digestHex(digest)}.json`;
const reset = new Error('ECONNRESET (test)');

/** The part numbers sent with bytes, in order; the empty liveness probe is left out. */
const partsSent = (sent: SentCommand[]) =>
  sent
    .filter((s) => s.command === 'UploadPartCommand' && s.input.ContentLength !== 0)
    .map((s) => s.input.PartNumber);
const bytesSent = (sent: SentCommand[]) =>
  sent
    .filter((s) => s.command === 'UploadPartCommand')
    .reduce((sum, s) => sum + Number(s.input.ContentLength), 0);

describe('S3BlobStore resumes a multipart upload', () => {
  let bucket: string;
  let client: S3Client;
  let sent: SentCommand[];
  let store: S3BlobStore;

  beforeEach(async () => {
    bucket = await server.createBucket();
    client = server.client();
    sent = recordCommands(client);
    store = new S3BlobStore({ client, bucket, partSize: PART });
  });
  afterEach(async () => {
    await server.removeBucket(bucket);
    client.destroy();
  });

  const storedState = async (): Promise<UploadState | undefined> => {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: stateKey }));
    return parseUploadState((await out.Body?.transformToString()) ?? '');
  };

  /** A first write whose source resets after three full parts (and a bit of the fourth). */
  const failAfterThreeParts = async (): Promise<UploadState> => {
    await expect(
      store.write(failingSource(bytes.subarray(0, 3 * PART + MiB), reset), expected),
    ).rejects.toBe(reset);
    expect(partsSent(sent)).toEqual([1, 2, 3]);
    expect(commandNames(sent)).not.toContain('AbortMultipartUploadCommand');
    expect(await store.stat(digest)).toBeUndefined();
    const state = await storedState();
    expect(state?.parts.map((p) => [p.number, p.sha256, p.size])).toEqual(
      [0, 1, 2].map((i) => [i + 1, sha256(bytes.subarray(i * PART, (i + 1) * PART)), PART]),
    );
    sent.length = 0;
    return state as UploadState;
  };

  const expectStoredBlob = async () => {
    expect(await store.stat(digest)).toEqual({ digest, size: bytes.length });
    const stored = await readAll(await store.read(digest));
    expect(sha256(stored)).toBe(digest);
    await expect(storedState()).rejects.toMatchObject({ name: 'NoSuchKey' });
  };

  it('uploads only the parts a failed write did not store, and completes the same bytes', async () => {
    const { uploadId } = await failAfterThreeParts();
    expect(await store.write(chunked(bytes), expected)).toEqual({ digest, size: bytes.length });
    expect(commandNames(sent)).not.toContain('CreateMultipartUploadCommand');
    expect(partsSent(sent)).toEqual([4, 5, 6]);
    expect(bytesSent(sent)).toBe(2 * PART + 2 * MiB);
    const complete = sent.find((s) => s.command === 'CompleteMultipartUploadCommand');
    expect(complete?.input.UploadId).toBe(uploadId);
    const listed = complete?.input.MultipartUpload as { Parts: { PartNumber: number }[] };
    expect(listed.Parts.map((p) => p.PartNumber)).toEqual([1, 2, 3, 4, 5, 6]);
    await expectStoredBlob();
  });

  it('uploads a part again when its bytes differ from the stored one, and still refuses the wrong blob', async () => {
    await failAfterThreeParts();
    const wrong = Buffer.from(bytes);
    wrong[PART + 7] = (wrong[PART + 7] ?? 0) ^ 0xff;
    await expect(store.write(chunked(wrong), expected)).rejects.toBeInstanceOf(DigestMismatchError);
    // Not part 6: the mismatch shows at the last byte, before the short last part is sent.
    expect(partsSent(sent)).toEqual([2, 4, 5]);
    expect(commandNames(sent)).not.toContain('CompleteMultipartUploadCommand');
    expect(await store.stat(digest)).toBeUndefined();
    // The state says truly what part 2 now holds, so the right bytes replace it next time.
    const state = await storedState();
    expect(state?.parts.find((p) => p.number === 2)?.sha256).toBe(
      sha256(wrong.subarray(PART, 2 * PART)),
    );
    sent.length = 0;
    await store.write(chunked(bytes), expected);
    expect(partsSent(sent)).toEqual([2, 6]);
    await expectStoredBlob();
  });

  it('starts over when the stored upload no longer exists (the lifecycle rule aborted it)', async () => {
    const { uploadId } = await failAfterThreeParts();
    await client.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: blobKey, UploadId: uploadId }),
    );
    sent.length = 0;
    await store.write(chunked(bytes), expected);
    const created = sent.filter((s) => s.command === 'CreateMultipartUploadCommand');
    expect(created).toHaveLength(1);
    expect(created[0]?.output?.UploadId).not.toBe(uploadId);
    expect(partsSent(sent)).toEqual([1, 2, 3, 4, 5, 6]);
    await expectStoredBlob();
  });

  it('starts over from a state it cannot read, or one cut for another part size', async () => {
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: stateKey, Body: '{"uploadId":' }),
    );
    await store.write(chunked(bytes), expected);
    expect(partsSent(sent)).toEqual([1, 2, 3, 4, 5, 6]);
    await expectStoredBlob();

    await store.delete(digest);
    sent.length = 0;
    const { uploadId } = await failAfterThreeParts();
    const sixMiB = new S3BlobStore({ client, bucket, partSize: 6 * MiB });
    await sixMiB.write(chunked(bytes), expected);
    expect(commandNames(sent)).toContain('CreateMultipartUploadCommand');
    expect(partsSent(sent)).toEqual([1, 2, 3, 4, 5]);
    await expectStoredBlob();
    // The 5 MiB upload is left to the bucket's lifecycle rule; fauxqs has none (and keeps a
    // bucket with an unfinished upload from being deleted), so the test aborts it instead.
    await client.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: blobKey, UploadId: uploadId }),
    );
  });

  it('lets two writers resume the same upload at once: the blob ends up right', async () => {
    await failAfterThreeParts();
    const results = await Promise.allSettled([
      store.write(chunked(bytes), expected),
      store.write(chunked(bytes, 1024 * 1024), expected),
    ]);
    // One completes; the other either finds the blob completed or fails cleanly (its part
    // went to an upload that had just been completed), never with the wrong bytes stored.
    expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
    for (const result of results) {
      if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(ImageCacheError);
    }
    expect(await store.stat(digest)).toEqual({ digest, size: bytes.length });
    expect((await readAll(await store.read(digest))).equals(bytes)).toBe(true);
  });

  it('lets the later of two completions of one upload find the blob the earlier one made', async () => {
    await failAfterThreeParts();
    // A second process's store, whose CompleteMultipartUpload waits until it is let go.
    const laterClient = server.client();
    let completing = false;
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    laterClient.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'CompleteMultipartUploadCommand') {
          completing = true;
          await held;
        }
        return next(args);
      },
      { step: 'initialize', name: 'holdCompletion' },
    );
    const later = new S3BlobStore({ client: laterClient, bucket, partSize: PART });
    const writingLater = later.write(chunked(bytes), expected);
    while (!completing) await new Promise((resolve) => setTimeout(resolve, 5));
    // The later writer stored parts 4 to 6 and said so in the state: nothing is left to send.
    expect(await store.write(chunked(bytes), expected)).toEqual({ digest, size: bytes.length });
    expect(partsSent(sent)).toEqual([]);
    letGo();
    expect(await writingLater).toEqual({ digest, size: bytes.length });
    laterClient.destroy();
    await expectStoredBlob();
  });

  it('keeps nothing for a write without a digest: its key is random, so it aborts as before', async () => {
    await expect(store.write(failingSource(bytes.subarray(0, 3 * PART + MiB), reset))).rejects.toBe(
      reset,
    );
    expect(commandNames(sent)).toContain('AbortMultipartUploadCommand');
    expect(sent.some((s) => String(s.input.Key).startsWith('staging/multipart/'))).toBe(false);
  });
});
