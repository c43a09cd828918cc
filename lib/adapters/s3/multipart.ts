import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { s3Call } from './errors.ts';
import { type MultipartUpload, openMultipartUpload, type Part } from './multipart-upload.ts';
import type { UploadStateObject } from './upload-state.ts';

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
  /**
   * Where the multipart upload keeps its state so that a later write of the same blob resumes
   * it (upload-state.ts). Only for a key named by the expected digest: a staged write's key is
   * random, so nobody could find its state again, and it aborts on failure as before.
   */
  resumeState?: UploadStateObject;
}

export interface UploadedObject {
  key: string;
  multipart: boolean;
}

/**
 * Uploads what `source` yields and commits only once it ended cleanly. The source is the
 * blob's VerifyingStream, which throws from its iterator on a size or digest mismatch instead
 * of ending, so: a body smaller than one part is sent with one PutObject after the last byte
 * was checked; a larger one is sent as parts while it streams, and CompleteMultipartUpload
 * comes only after the check. On failure no object is left at the key; whether the unfinished
 * upload is kept for a later write to resume or aborted is MultipartUpload.fail's call. Parts
 * are Buffers, not streams, so the SDK can retry them and checksum them.
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
        upload ??= await openMultipartUpload(options, options.multipartKey());
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
    await upload?.fail(error);
    throw error;
  }
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
