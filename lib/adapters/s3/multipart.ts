import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { ImageCacheError } from '../../errors.ts';
import { s3Call } from './errors.ts';
import { MAX_PARTS } from './part-size.ts';

export interface StreamUploadOptions {
  client: S3Client;
  bucket: string;
  partSize: number;
  /** Part uploads in flight at once; memory is (concurrency + 1) parts. */
  concurrency: number;
  /** Where a body smaller than one part goes; asked only after the source ended cleanly. */
  singleKey: () => string;
  /** Where a multipart upload goes; asked when the first part is full. */
  multipartKey: () => string;
}

export interface UploadedObject {
  key: string;
  multipart: boolean;
}

/**
 * Uploads what `source` yields and commits only once it ended cleanly. The source is the
 * blob's VerifyingStream, which throws from its iterator on a size or digest mismatch instead
 * of ending, so: a body smaller than one part is sent with one PutObject after the last byte
 * was checked; a larger one is sent as parts while it streams, CompleteMultipartUpload comes
 * only after the check, and on any failure the upload is aborted so no object (and no stored
 * part) is left. Parts are Buffers, not streams, so the SDK can retry them and checksum them.
 */
export async function uploadFromStream(
  source: AsyncIterable<Uint8Array>,
  options: StreamUploadOptions,
): Promise<UploadedObject> {
  const assembler = new PartAssembler(options.partSize);
  let upload: MultipartUpload | undefined;
  try {
    for await (const chunk of source) {
      for (const part of assembler.add(chunk)) {
        upload ??= await MultipartUpload.create(options, options.multipartKey());
        await upload.add(part);
      }
    }
    const rest = assembler.rest();
    if (!upload) {
      const body = rest.bytes;
      const key = options.singleKey();
      await s3Call(
        options.client.send(
          new PutObjectCommand({
            Bucket: options.bucket,
            Key: key,
            Body: body,
            ContentLength: body.length,
            ChecksumAlgorithm: 'CRC32',
          }),
        ),
        'PutObject',
        key,
      );
      return { key, multipart: false };
    }
    if (rest.bytes.length > 0) await upload.add(rest);
    await upload.complete();
    return { key: upload.key, multipart: true };
  } catch (error) {
    await upload?.abort();
    throw error;
  }
}

/** A part's bytes, and how to hand its buffer back for the next part once it was sent. */
interface Part {
  bytes: Buffer;
  release(): void;
}

/**
 * Cuts a stream of chunks into parts of exactly `partSize` bytes (the last may be shorter).
 * The first part is gathered as the incoming chunks themselves, so a blob smaller than a part
 * never allocates one. Once a blob proved to be multipart, parts are filled into part-sized
 * buffers that are recycled after their upload settled: a write allocates (concurrency + 1)
 * buffers however long the blob, rather than leaving one part of garbage per part sent.
 */
class PartAssembler {
  readonly #partSize: number;
  readonly #free: Buffer[] = [];
  #chunks: Uint8Array[] = [];
  #buffer: Buffer | undefined;
  #filled = 0;
  #multipart = false;

  constructor(partSize: number) {
    this.#partSize = partSize;
  }

  *add(chunk: Uint8Array): Generator<Part> {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(chunk.length - offset, this.#partSize - this.#filled);
      const piece = chunk.subarray(offset, offset + take);
      if (this.#multipart) {
        this.#buffer ??= this.#allocate();
        this.#buffer.set(piece, this.#filled);
      } else {
        this.#chunks.push(piece);
      }
      this.#filled += take;
      offset += take;
      if (this.#filled === this.#partSize) {
        if (!this.#multipart) {
          this.#buffer = this.#allocate();
          let at = 0;
          for (const gathered of this.#chunks) {
            this.#buffer.set(gathered, at);
            at += gathered.length;
          }
          this.#chunks = [];
          this.#multipart = true;
        }
        yield this.#emit();
      }
    }
  }

  /** What is left after the last full part: possibly nothing, or the whole of a small blob. */
  rest(): Part {
    if (this.#multipart) return this.#emit();
    const bytes = Buffer.concat(this.#chunks, this.#filled);
    this.#chunks = [];
    this.#filled = 0;
    return { bytes, release: () => undefined };
  }

  #emit(): Part {
    const buffer = this.#buffer ?? Buffer.alloc(0);
    const bytes = buffer.subarray(0, this.#filled);
    this.#buffer = undefined;
    this.#filled = 0;
    return { bytes, release: () => this.#free.push(buffer) };
  }

  #allocate(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#partSize);
  }
}

/** One multipart upload with at most `concurrency` UploadPart requests in flight. */
class MultipartUpload {
  readonly key: string;
  readonly #options: StreamUploadOptions;
  readonly #uploadId: string;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #parts: CompletedPart[] = [];
  #nextPart = 1;
  #failure: { error: unknown } | undefined;

  private constructor(options: StreamUploadOptions, key: string, uploadId: string) {
    this.#options = options;
    this.key = key;
    this.#uploadId = uploadId;
  }

  static async create(options: StreamUploadOptions, key: string): Promise<MultipartUpload> {
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
    return new MultipartUpload(options, key, created.UploadId);
  }

  /** Starts uploading `part`, first waiting for a free slot: that wait is the backpressure. */
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
      .then(
        (out) => {
          this.#parts.push({
            PartNumber: partNumber,
            ETag: out.ETag,
            ChecksumCRC32: out.ChecksumCRC32,
          });
        },
        // Kept, not thrown: the next add() or complete() reports it, and no rejection is left
        // unhandled while the source is still being read.
        (error: unknown) => {
          this.#failure ??= { error };
        },
      )
      .finally(() => {
        // Settled: the SDK no longer reads the buffer (retries happen before this).
        part.release();
        this.#inFlight.delete(sending);
      });
    this.#inFlight.add(sending);
  }

  async complete(): Promise<void> {
    await Promise.all(this.#inFlight);
    this.#throwIfFailed();
    const parts = [...this.#parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await s3Call(
      this.#options.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#options.bucket,
          Key: this.key,
          UploadId: this.#uploadId,
          MultipartUpload: { Parts: parts },
        }),
      ),
      'CompleteMultipartUpload',
      this.key,
    );
  }

  /**
   * Parts still uploading could be stored after an abort, so their requests settle first.
   * A failed abort is not reported over the error that caused it: the bucket's lifecycle rule
   * (AbortIncompleteMultipartUpload) removes what is left, and no object exists at the key.
   */
  async abort(): Promise<void> {
    await Promise.allSettled(this.#inFlight);
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

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }
}
