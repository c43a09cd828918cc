import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Digest } from '../digest.ts';
import { ImageCacheError, InvalidArgumentError } from '../errors.ts';
import type {
  BlobStore,
  ByteRange,
  ListedBlob,
  PresignedBlobUrls,
  PresignedUrl,
  StagingSweeper,
  StoredBlob,
  SweptStaging,
} from '../ports/blob-store.ts';
import { VerifyingStream } from '../verify.ts';
import { s3Client } from './s3/client.ts';
import { copyWithinBucket } from './s3/copy.ts';
import { isMissingKey, s3Call } from './s3/errors.ts';
import { type S3Keys, s3Keys } from './s3/keys.ts';
import { type UploadedObject, uploadFromStream } from './s3/multipart.ts';
import {
  choosePartSize,
  DEFAULT_PART_SIZING,
  MAX_COPY_OBJECT_SIZE,
  MiB,
  type PartSizing,
  validatePartSize,
  validatePartSizing,
} from './s3/part-size.ts';
import { MAX_URL_SECONDS, UrlSigner } from './s3/presign.ts';
import { UploadStateObject } from './s3/upload-state.ts';
import { S3Uploads } from './s3/uploads.ts';

export type { PresignedBlobUrls } from '../ports/blob-store.ts';
export type { S3ClientSettings } from './s3/client.ts';

export interface S3BlobStoreOptions {
  client: S3Client;
  bucket: string;
  /** Keys live under `<prefix>/blobs/sha256/` and `<prefix>/staging/`; default the bucket root. */
  prefix?: string;
  /** Floor of the part size, and the largest body sent as one PutObject; default 8 MiB. */
  partSize?: number;
  /** Part size when the length is not known in advance; default 16 MiB (156 GiB at most). */
  unknownSizePartSize?: number;
  /**
   * UploadPart requests in flight per write; a write holds (this + 1) part buffers. Default 1:
   * one part uploads while the next fills, so 2 parts (16 MiB) at most, as invariant 4 wants
   * memory flat and small; raise it for throughput where uploads are slower than the source.
   */
  uploadConcurrency?: number;
  /** MaxKeys of each ListObjectsV2 page; default 1000. */
  listPageSize?: number;
  /** Presigned client uploads: the largest given one PUT, and the part size above it (S3Uploads). */
  uploadPartSize?: number;
  /** Staged objects up to this size are copied with one CopyObject; default (and max) 5 GiB. */
  maxSingleCopySize?: number;
  /** Smallest UploadPartCopy range above that; default 512 MiB. */
  copyPartSize?: number;
}

/** DeleteObjects takes at most this many keys per request. */
const DELETE_BATCH = 1000;

/**
 * Blobs as S3 objects at `blobs/sha256/<hex>` (invariant 1: bytes are hashed while they
 * stream, and nothing is committed at a blob's key before its size and digest matched; see
 * uploadFromStream). Writes with a known digest go straight to the blob's key: an unfinished
 * multipart upload is invisible, and it is aborted on a mismatch. On any other failure it is
 * kept, with its state at `staging/multipart/<hex>.json`, and the next write of that digest
 * resumes it, sending only the parts whose bytes are not stored yet (multipart-upload.ts).
 * Writes without one that fit in one part are hashed before their single PutObject and so go
 * straight there too; larger ones are uploaded to a staging key, copied into place server-side
 * once their digest is known, and the staging object is removed (such a write cannot resume:
 * nothing names its upload before the last byte). Equal content makes every write idempotent,
 * so no conditional write (If-None-Match) is needed for correctness.
 */
export class S3BlobStore implements BlobStore, PresignedBlobUrls, StagingSweeper {
  /** An S3Client from the SDK's standard settings (region, credentials, AWS_ENDPOINT_URL_S3). */
  /** A client from the SDK's standard settings (see s3Client). */
  static clientFor = s3Client;

  readonly client: S3Client;
  /** Signs every presigned URL of this bucket: blob redirects, uploads, save exports. */
  readonly urlSigner: UrlSigner;
  readonly bucket: string;
  readonly keys: S3Keys;
  /** Presigned client uploads for POST /cache/loads (lib/ports/presigned-uploads.ts). */
  readonly presignedUploads: S3Uploads;
  readonly #sizing: PartSizing;
  readonly #uploadConcurrency: number;
  readonly #listPageSize: number;
  readonly #maxSingleCopySize: number;
  readonly #copyPartSize: number;

  constructor(options: S3BlobStoreOptions) {
    if (!options.bucket) throw new InvalidArgumentError('S3 bucket name is required');
    this.client = options.client;
    this.urlSigner = new UrlSigner(this.client);
    this.bucket = options.bucket;
    this.keys = s3Keys(options.prefix);
    this.presignedUploads = new S3Uploads({
      client: this.client,
      urlSigner: this.urlSigner,
      bucket: this.bucket,
      keys: this.keys,
      ...(options.uploadPartSize !== undefined && { partSize: options.uploadPartSize }),
    });
    this.#sizing = validatePartSizing({
      partSize: options.partSize ?? DEFAULT_PART_SIZING.partSize,
      unknownSizePartSize: options.unknownSizePartSize ?? DEFAULT_PART_SIZING.unknownSizePartSize,
    });
    this.#uploadConcurrency = positiveInteger(options.uploadConcurrency ?? 1, 'uploadConcurrency');
    this.#listPageSize = positiveInteger(options.listPageSize ?? 1000, 'listPageSize');
    this.#maxSingleCopySize = Math.min(
      MAX_COPY_OBJECT_SIZE,
      positiveInteger(options.maxSingleCopySize ?? MAX_COPY_OBJECT_SIZE, 'maxSingleCopySize'),
    );
    this.#copyPartSize = validatePartSize(options.copyPartSize ?? 512 * MiB, 'copyPartSize');
  }

  async stat(digest: Digest): Promise<StoredBlob | undefined> {
    const key = this.keys.blob(digest);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { digest, size: head.ContentLength ?? 0 };
    } catch (error) {
      if (isMissingKey(error)) return undefined;
      return s3Call(Promise.reject(error), 'HeadObject', key);
    }
  }

  async read(digest: Digest, range?: ByteRange): Promise<Readable> {
    const key = this.keys.blob(digest);
    // Shapes S3 would reject or misread are refused here; a start past the end is left to S3,
    // which answers InvalidRange (translated to InvalidArgumentError), as the filesystem does.
    if (range) checkRangeShape(range, digest);
    const header = range ? `bytes=${range.start}-${range.end ?? ''}` : undefined;
    const out = await s3Call(
      this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: header })),
      'GetObject',
      key,
    );
    const body = out.Body;
    if (!(body instanceof Readable)) {
      throw new ImageCacheError('INTERNAL', `S3 GetObject ${key}: the body is not a Node stream`);
    }
    // A server that ignores Range answers 200 with the whole object: never hand that out as
    // the requested slice.
    if (range && !out.ContentRange?.startsWith(`bytes ${range.start}-`)) {
      body.destroy();
      throw new ImageCacheError(
        'INTERNAL',
        `S3 GetObject ${key}: asked for ${header}, got Content-Range ${out.ContentRange ?? '(none)'}`,
      );
    }
    return body;
  }

  async write(
    body: Readable,
    expected: { digest?: Digest; size?: number } = {},
  ): Promise<StoredBlob> {
    const verifier = new VerifyingStream(expected, `blob ${expected.digest ?? '(unnamed)'}`);
    const known = expected.digest;
    let uploaded: UploadedObject;
    try {
      const partSize = choosePartSize(expected.size, this.#sizing);
      // The upload consumes the verifier's output itself, rather than as pipeline()'s last
      // stage, because pipeline() settles on the first stream error without waiting for its
      // destination: the write would report failure while parts were still uploading and the
      // abort not yet sent. Here both are awaited, and the upload aborts before either settles.
      const piping = pipeline(body, verifier);
      const uploading = uploadFromStream(verifier, {
        client: this.client,
        bucket: this.bucket,
        partSize,
        concurrency: this.#uploadConcurrency,
        singleKey: () => this.keys.blob(verifier.digest),
        multipartKey: () => (known ? this.keys.blob(known) : this.keys.staging()),
        ...(known && {
          resumeState: new UploadStateObject(
            this.client,
            this.bucket,
            this.keys.multipartState(known),
          ),
        }),
      });
      const [piped, upload] = await Promise.allSettled([piping, uploading]);
      // The upload's own failure (S3) explains more than the premature close it caused.
      if (upload.status === 'rejected') throw upload.reason;
      if (piped.status === 'rejected') throw piped.reason;
      uploaded = upload.value;
    } catch (error) {
      // Releases the source (e.g. an upstream socket) when the failure came from our side.
      body.destroy();
      throw error;
    }
    const digest = verifier.digest;
    const size = verifier.size;
    const finalKey = this.keys.blob(digest);
    if (uploaded.key !== finalKey) {
      try {
        await copyWithinBucket(uploaded.key, finalKey, size, {
          client: this.client,
          bucket: this.bucket,
          maxSingleCopySize: this.#maxSingleCopySize,
          copyPartSize: this.#copyPartSize,
          concurrency: 4,
        });
      } finally {
        // Left over only if this fails too; sweepStaging (or a lifecycle rule) sweeps it.
        await this.#deleteKeys([uploaded.key]).catch(() => undefined);
      }
    }
    return { digest, size };
  }

  async delete(digest: Digest): Promise<void> {
    const key = this.keys.blob(digest);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      if (isMissingKey(error)) return;
      await s3Call(Promise.reject(error), 'DeleteObject', key);
    }
  }

  /** Deletes many blobs with DeleteObjects, 1,000 per request; absent ones are fine. */
  async deleteMany(digests: Iterable<Digest>): Promise<void> {
    const keys = [...new Set(Array.from(digests, (digest) => this.keys.blob(digest)))];
    await this.#deleteKeys(keys);
  }

  async *list(): AsyncIterable<ListedBlob> {
    for await (const object of this.#listObjects(this.keys.blobsPrefix)) {
      const digest = this.keys.digestOf(object.key);
      if (digest) yield { digest, size: object.size, modifiedAt: object.modifiedAt };
    }
  }

  async presignedGetUrl(digest: Digest, expiresSeconds: number): Promise<PresignedUrl> {
    if (
      !Number.isSafeInteger(expiresSeconds) ||
      expiresSeconds < 1 ||
      expiresSeconds > MAX_URL_SECONDS
    ) {
      throw new InvalidArgumentError(
        `presigned URL lifetime must be 1 to ${MAX_URL_SECONDS} seconds, got ${expiresSeconds}`,
      );
    }
    const key = this.keys.blob(digest);
    const presigner = await this.urlSigner.open(expiresSeconds);
    // No ChecksumMode: a GET whose URL signs x-amz-checksum-mode is refused to plain clients.
    const url = await presigner.sign(new GetObjectCommand({ Bucket: this.bucket, Key: key }), key);
    return { url, expiresIn: presigner.expiresIn };
  }

  /**
   * Removes staging objects idle for `idleMs`: what a writer that died between completing its
   * upload and copying it into place left behind. Which writer is alive cannot be told here (any
   * number of functions write), so age alone decides. Client uploads under `staging/uploads/`
   * wait for their commit call and are left to the bucket's lifecycle rule, as are unfinished
   * multipart uploads, which are not objects (its AbortIncompleteMultipartUpload rule).
   */
  async sweepStaging(idleMs: number, now = Date.now()): Promise<SweptStaging> {
    const stale: string[] = [];
    let bytes = 0;
    for await (const object of this.#listObjects(this.keys.stagingPrefix)) {
      if (!this.keys.isStagedWrite(object.key) || object.modifiedAt >= now - idleMs) continue;
      stale.push(object.key);
      bytes += object.size;
    }
    await this.#deleteKeys(stale);
    return { files: stale.length, bytes };
  }

  async *#listObjects(
    prefix: string,
  ): AsyncIterable<{ key: string; size: number; modifiedAt: number }> {
    let token: string | undefined;
    do {
      const page = await s3Call(
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            MaxKeys: this.#listPageSize,
            ContinuationToken: token,
          }),
        ),
        'ListObjectsV2',
        prefix,
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield {
          key: object.Key,
          size: object.Size ?? 0,
          modifiedAt: object.LastModified?.getTime() ?? 0,
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async #deleteKeys(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const out = await s3Call(
        this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ),
        'DeleteObjects',
        batch[0] ?? '',
      );
      // Per-key failures come back in a 200 answer, not as a thrown error.
      const errors = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (errors.length > 0) {
        const sample = errors
          .slice(0, 3)
          .map((e) => `${e.Key}: ${e.Code}`)
          .join(', ');
        throw new ImageCacheError(
          'INTERNAL',
          `S3 DeleteObjects: ${errors.length} of ${batch.length} keys failed (${sample})`,
        );
      }
    }
  }
}

function checkRangeShape(range: ByteRange, digest: Digest): void {
  const { start, end } = range;
  const valid =
    Number.isSafeInteger(start) &&
    start >= 0 &&
    (end === undefined || (Number.isSafeInteger(end) && end >= start));
  if (!valid) {
    throw new InvalidArgumentError(`invalid byte range ${start}-${end ?? ''} for ${digest}`);
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`S3 ${name} must be a positive integer, got ${value}`);
  }
  return value;
}
