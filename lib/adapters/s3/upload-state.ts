/**
 * The durable half of a resumable multipart upload: a small JSON object in the bucket (its key
 * from keys.ts, one per blob digest) naming the upload id, the part size and every part known
 * to be stored. Kept in the bucket rather than in the worker's memory so a write that died
 * (a Lambda timeout, a reset upstream) is resumed by the next write of the same blob, on any
 * process. S3's ListParts would say which parts exist, but not that their bytes are the ones a
 * later source yields (an ETag is no sha256, and fauxqs lacks ListParts), so each part carries
 * the sha256 of its bytes.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { isMissingKey, s3Call } from './errors.ts';

export interface StoredPart {
  number: number;
  etag: string;
  /** What CompleteMultipartUpload must repeat for an upload created with CRC32 checksums. */
  crc32?: string;
  /** `sha256:<hex>` of the part's bytes: what a resumed write compares its own bytes with. */
  sha256: string;
  size: number;
}

export interface UploadState {
  /** The object key the upload completes at, so a state is never applied to another key. */
  key: string;
  uploadId: string;
  partSize: number;
  parts: StoredPart[];
}

/** One blob's upload state object: read once when a write starts, rewritten after each part. */
export class UploadStateObject {
  readonly stateKey: string;
  readonly #client: S3Client;
  readonly #bucket: string;

  constructor(client: S3Client, bucket: string, stateKey: string) {
    this.#client = client;
    this.#bucket = bucket;
    this.stateKey = stateKey;
  }

  /** The stored state, or undefined when there is none or it cannot be used (starts over). */
  async load(): Promise<UploadState | undefined> {
    let text: string;
    try {
      const out = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: this.stateKey }),
      );
      text = (await out.Body?.transformToString()) ?? '';
    } catch (error) {
      if (isMissingKey(error)) return undefined;
      return s3Call(Promise.reject(error), 'GetObject', this.stateKey);
    }
    return parseUploadState(text);
  }

  async save(state: UploadState): Promise<void> {
    const body = JSON.stringify(state);
    await s3Call(
      this.#client.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: this.stateKey,
          Body: body,
          ContentType: 'application/json',
        }),
      ),
      'PutObject',
      this.stateKey,
    );
  }

  async discard(): Promise<void> {
    await s3Call(
      this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.stateKey })),
      'DeleteObject',
      this.stateKey,
    );
  }
}

/**
 * A state is only an offer of work already done: anything malformed (a half-written object
 * from another version, a hand edit) is ignored and the write starts over, never trusted.
 */
export function parseUploadState(text: string): UploadState | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { key, uploadId, partSize, parts } = value as Record<string, unknown>;
  if (typeof key !== 'string' || typeof uploadId !== 'string' || uploadId === '') return undefined;
  if (!Number.isSafeInteger(partSize) || !Array.isArray(parts)) return undefined;
  if (!parts.every(isStoredPart)) return undefined;
  return { key, uploadId, partSize: partSize as number, parts };
}

function isStoredPart(value: unknown): value is StoredPart {
  if (typeof value !== 'object' || value === null) return false;
  const { number, etag, crc32, sha256, size } = value as Record<string, unknown>;
  return (
    Number.isSafeInteger(number) &&
    (number as number) >= 1 &&
    typeof etag === 'string' &&
    (crc32 === undefined || typeof crc32 === 'string') &&
    typeof sha256 === 'string' &&
    /^sha256:[a-f0-9]{64}$/.test(sha256) &&
    Number.isSafeInteger(size) &&
    (size as number) >= 0
  );
}
