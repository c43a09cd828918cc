/**
 * One multipart upload of a streamed write: created, or resumed from the state an earlier write
 * of the same blob left in the bucket (upload-state.ts), so a blob that does not finish within
 * one Lambda invocation finishes in a later one instead of starting over each time.
 */
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { sha256 } from '../../digest.ts';
import { DigestMismatchError, ImageCacheError } from '../../errors.ts';
import { s3Call, s3ErrorCode } from './errors.ts';
import { MAX_PARTS } from './part-size.ts';
import type { StoredPart, UploadState, UploadStateObject } from './upload-state.ts';

export interface MultipartUploadOptions {
  client: S3Client;
  bucket: string;
  partSize: number;
  /** UploadPart requests in flight at once. */
  concurrency: number;
  /** Absent: nothing is resumed or kept, and any failure aborts the upload. */
  resumeState?: UploadStateObject;
}

/** A part's bytes, and how to hand its buffer back for the next part once it was sent. */
export interface Part {
  bytes: Buffer;
  release(): void;
}

/**
 * Resumes the upload a stored state names when it is for this key and part size and still
 * exists; otherwise creates one. A state for another part size (the blob's size was unknown
 * then, or the setting changed) cannot line its parts up with this write's, so it is ignored.
 */
export async function openMultipartUpload(
  options: MultipartUploadOptions,
  key: string,
): Promise<MultipartUpload> {
  const found = await options.resumeState?.load();
  if (
    found &&
    found.key === key &&
    found.partSize === options.partSize &&
    (await uploadExists(options, key, found.uploadId))
  ) {
    // The probe replaced whatever part PROBE_PART held, so that one is never reused.
    const stored = found.parts.filter((part) => part.number !== PROBE_PART);
    return new MultipartUpload(options, key, found.uploadId, stored);
  }
  const created = await s3Call(
    options.client.send(
      new CreateMultipartUploadCommand({
        Bucket: options.bucket,
        Key: key,
        ChecksumAlgorithm: 'CRC32',
      }),
    ),
    'CreateMultipartUpload',
    key,
  );
  if (!created.UploadId) {
    throw new ImageCacheError('INTERNAL', `S3 CreateMultipartUpload ${key}: no UploadId`);
  }
  return new MultipartUpload(options, key, created.UploadId, undefined);
}

/** The part number the liveness probe writes to: the last S3 allows, rarely a real one. */
const PROBE_PART = MAX_PARTS;

/**
 * Whether a stored upload id still names an unfinished upload: the bucket's lifecycle rule
 * aborts those a day after they started, and a concurrent writer may have completed it. It has
 * to be known before the first stored part is skipped, as a skipped part's bytes stream by and
 * cannot be sent to a new upload later. Asked by uploading an empty part at PROBE_PART (fauxqs
 * has no ListParts, and this works on any S3 server): CompleteMultipartUpload assembles only
 * the parts it lists, so the probe never becomes part of the object, and a blob that does need
 * part 10,000 uploads its bytes over it.
 */
async function uploadExists(
  options: MultipartUploadOptions,
  key: string,
  uploadId: string,
): Promise<boolean> {
  try {
    await options.client.send(
      new UploadPartCommand({
        Bucket: options.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: PROBE_PART,
        Body: Buffer.alloc(0),
        ContentLength: 0,
        ChecksumAlgorithm: 'CRC32',
      }),
    );
    return true;
  } catch (error) {
    if (s3ErrorCode(error) === 'NoSuchUpload') return false;
    return s3Call(Promise.reject(error), 'UploadPart', key);
  }
}

/** Codes by which CompleteMultipartUpload says the parts named are not the ones stored. */
const PARTS_DISAGREE = new Set(['InvalidPart', 'InvalidPartOrder', 'EntityTooSmall']);

/** One multipart upload with at most `concurrency` UploadPart requests in flight. */
export class MultipartUpload {
  readonly key: string;
  readonly #options: MultipartUploadOptions;
  readonly #uploadId: string;
  /** Found in a stored state rather than created here: another write may still be using it. */
  readonly #resumed: boolean;
  /** Parts known to be stored in the upload, by number: what the state object records. */
  readonly #stored = new Map<number, StoredPart>();
  readonly #inFlight = new Set<Promise<void>>();
  /** This write's parts, uploaded or reused: what CompleteMultipartUpload lists. */
  readonly #parts: CompletedPart[] = [];
  #bytes = 0;
  #nextPart = 1;
  #failure: { error: unknown } | undefined;
  /** State writes run one at a time, each writing the latest snapshot (so none is older). */
  #saving: Promise<void> = Promise.resolve();
  #saveQueued = false;
  /** Set when S3 refused the parts at completion: the stored state no longer describes them. */
  #stateWrong = false;

  constructor(
    options: MultipartUploadOptions,
    key: string,
    uploadId: string,
    resumedParts: StoredPart[] | undefined,
  ) {
    this.#options = options;
    this.key = key;
    this.#uploadId = uploadId;
    this.#resumed = resumedParts !== undefined;
    for (const part of resumedParts ?? []) this.#stored.set(part.number, part);
  }

  /**
   * Starts uploading `part`, first waiting for a free slot: that wait is the backpressure. A
   * part the stored state has with the same sha256 and length is not sent again; its stored
   * ETag (and CRC32) go into the completion instead, and S3 refuses that completion should the
   * stored part have been replaced since (the ETag would differ).
   */
  async add(part: Part): Promise<void> {
    this.#throwIfFailed();
    while (this.#inFlight.size >= this.#options.concurrency) {
      await Promise.race(this.#inFlight);
      this.#throwIfFailed();
    }
    if (this.#nextPart > MAX_PARTS) {
      throw new ImageCacheError(
        'PAYLOAD_TOO_LARGE',
        `blob needs more than ${MAX_PARTS} parts of ${this.#options.partSize} bytes`,
      );
    }
    const partNumber = this.#nextPart++;
    const body = part.bytes;
    this.#bytes += body.length;
    // Hashed only when kept: a write that cannot resume has no use for the extra pass.
    const hash = this.#options.resumeState ? sha256(body) : undefined;
    const stored = this.#stored.get(partNumber);
    if (stored && stored.sha256 === hash && stored.size === body.length) {
      this.#parts.push(completedPart(stored));
      part.release();
      return;
    }
    // Until this request answers, S3 may hold the old bytes or these: the state claims neither.
    this.#stored.delete(partNumber);
    const { client, bucket } = this.#options;
    const sending: Promise<void> = s3Call(
      client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: this.key,
          UploadId: this.#uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
          ChecksumAlgorithm: 'CRC32',
        }),
      ),
      'UploadPart',
      this.key,
    )
      .then((out) => {
        this.#parts.push({
          PartNumber: partNumber,
          ETag: out.ETag,
          ChecksumCRC32: out.ChecksumCRC32,
        });
        if (hash !== undefined && out.ETag !== undefined) {
          this.#stored.set(partNumber, {
            number: partNumber,
            etag: out.ETag,
            ...(out.ChecksumCRC32 !== undefined && { crc32: out.ChecksumCRC32 }),
            sha256: hash,
            size: body.length,
          });
          this.#queueSave();
        }
      })
      // Kept, not thrown: the next add() or complete() reports it, and no rejection is left
      // unhandled while the source is still being read.
      .catch((error: unknown) => {
        this.#failure ??= { error };
      })
      .finally(() => {
        // Settled: the SDK no longer reads the buffer (retries happen before this).
        part.release();
        this.#inFlight.delete(sending);
      });
    this.#inFlight.add(sending);
  }

  async complete(): Promise<void> {
    await Promise.all(this.#inFlight);
    await this.#saving;
    this.#throwIfFailed();
    const parts = [...this.#parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    try {
      await this.#options.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#options.bucket,
          Key: this.key,
          UploadId: this.#uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    } catch (error) {
      const code = s3ErrorCode(error);
      if (code !== 'NoSuchUpload' || !(await this.#completedByAnother())) {
        if (code !== undefined && PARTS_DISAGREE.has(code)) this.#stateWrong = true;
        await s3Call(Promise.reject(error), 'CompleteMultipartUpload', this.key);
      }
    }
    // Nothing is left to resume. A failed delete leaves a state naming a finished upload: the
    // next write's probe finds it gone and starts over, and the lifecycle rule expires it.
    await this.#options.resumeState?.discard().catch(() => undefined);
  }

  /**
   * After a failure no object exists at the key; what happens to the upload depends on why.
   * A resumable write keeps it (with its state, made durable before this returns) unless the
   * bytes themselves were refused: a reset source, an S3 error or a killed process leave parts
   * that match the blob, for the next write to reuse. Wrong bytes (a digest or size mismatch),
   * a blob too large, or parts S3 no longer agrees with are of no use, so an upload this write
   * created is aborted and its state removed; one it resumed is left as it is, since another
   * write may be finishing it, and the state still says truly which bytes each part holds.
   */
  async fail(error: unknown): Promise<void> {
    await Promise.allSettled(this.#inFlight);
    await this.#saving;
    const state = this.#options.resumeState;
    const useless = this.#stateWrong || isRefusal(error);
    if (state && !useless) return;
    if (state && (this.#stateWrong || !this.#resumed)) await state.discard().catch(() => undefined);
    if (!this.#resumed) await this.#abort();
  }

  /**
   * A concurrent writer of the same blob completed the upload first: its object is at the key.
   * Only bytes whose digest was checked are ever completed at a blob key (invariant 1), so an
   * object of this write's length there is this blob.
   */
  async #completedByAnother(): Promise<boolean> {
    if (!this.#options.resumeState) return false;
    try {
      const head = await this.#options.client.send(
        new HeadObjectCommand({ Bucket: this.#options.bucket, Key: this.key }),
      );
      return head.ContentLength === this.#bytes;
    } catch {
      return false;
    }
  }

  /**
   * Parts still uploading could be stored after an abort, so their requests settled first.
   * A failed abort is not reported over the error that caused it: the bucket's lifecycle rule
   * (AbortIncompleteMultipartUpload) removes what is left, and no object exists at the key.
   */
  async #abort(): Promise<void> {
    try {
      await this.#options.client.send(
        new AbortMultipartUploadCommand({
          Bucket: this.#options.bucket,
          Key: this.key,
          UploadId: this.#uploadId,
        }),
      );
    } catch {
      // See above.
    }
  }

  #queueSave(): void {
    const state = this.#options.resumeState;
    if (!state || this.#saveQueued) return;
    this.#saveQueued = true;
    this.#saving = this.#saving
      .then(() => {
        this.#saveQueued = false;
        return state.save(this.#snapshot());
      })
      .catch((error: unknown) => {
        this.#failure ??= { error };
      });
  }

  #snapshot(): UploadState {
    return {
      key: this.key,
      uploadId: this.#uploadId,
      partSize: this.#options.partSize,
      parts: [...this.#stored.values()].sort((a, b) => a.number - b.number),
    };
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }
}

function completedPart(part: StoredPart): CompletedPart {
  return {
    PartNumber: part.number,
    ETag: part.etag,
    ...(part.crc32 !== undefined && { ChecksumCRC32: part.crc32 }),
  };
}

/** The source's bytes were refused, so the parts this write stored are not the blob's. */
function isRefusal(error: unknown): boolean {
  return (
    error instanceof DigestMismatchError ||
    (error instanceof ImageCacheError && error.code === 'PAYLOAD_TOO_LARGE')
  );
}
