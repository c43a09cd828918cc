import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import type { SaveExport, SaveExports } from '../save/export.ts';
import { isMissingKey, s3Call } from './s3/errors.ts';
import { EXPORT_LIFECYCLE_DAYS } from './s3/keys.ts';
import { uploadFromStream } from './s3/multipart.ts';
import { choosePartSize, DEFAULT_PART_SIZING } from './s3/part-size.ts';
import type { S3BlobStore } from './s3-blob-store.ts';

const DAY_MS = 24 * 3600_000;
/**
 * Kept between a reused export's URL expiring and its lifecycle expiry: S3 rounds expiry up to
 * the next midnight UTC, so this covers clock skew between the writer and S3 generously.
 */
const LIFECYCLE_MARGIN_MS = 3600_000;

export interface S3SaveExportsOptions {
  /** Lifetime of the presigned GET; default 15 minutes. */
  urlSeconds?: number;
  now?: () => number;
}

/**
 * Save exports as objects under the blob store's `exports/` prefix (a bucket lifecycle rule
 * expires them), keyed by content so the same images are written once. Written with the blob
 * store's streaming upload: multipart past one part, aborted (nothing committed) if the
 * tarball stream fails, so an object at an export key is always a whole tarball.
 */
export class S3SaveExports implements SaveExports {
  readonly #store: S3BlobStore;
  readonly #urlSeconds: number;
  readonly #now: () => number;

  constructor(store: S3BlobStore, options: S3SaveExportsOptions = {}) {
    this.#store = store;
    this.#urlSeconds = options.urlSeconds ?? 15 * 60;
    this.#now = options.now ?? Date.now;
  }

  async find(key: string, size: number): Promise<SaveExport | undefined> {
    const objectKey = this.#store.keys.export(key);
    try {
      const head = await this.#store.client.send(
        new HeadObjectCommand({ Bucket: this.#store.bucket, Key: objectKey }),
      );
      // A different length cannot be this tarball: write it again.
      if (head.ContentLength !== size) return undefined;
      // Too old to outlive a URL signed now: written again, the object's life starts over.
      if (!this.#outlivesUrl(head.LastModified)) return undefined;
    } catch (error) {
      if (isMissingKey(error)) return undefined;
      return s3Call(Promise.reject(error), 'HeadObject', objectKey);
    }
    return this.#signed(objectKey, size);
  }

  async export(
    key: string,
    size: number,
    open: () => Readable,
    onProgress?: (bytes: number) => void,
  ): Promise<SaveExport> {
    const objectKey = this.#store.keys.export(key);
    const body = open();
    try {
      await uploadFromStream(onProgress ? counted(body, onProgress) : body, {
        client: this.#store.client,
        bucket: this.#store.bucket,
        partSize: choosePartSize(size, DEFAULT_PART_SIZING),
        concurrency: 1,
        singleKey: () => objectKey,
        multipartKey: () => objectKey,
      });
    } finally {
      if (!body.readableEnded) body.destroy();
    }
    return this.#signed(objectKey, size);
  }

  /** Whether an object written at `written` stays until a URL signed now has expired. */
  #outlivesUrl(written: Date | undefined): boolean {
    if (!written) return false;
    const expiry = written.getTime() + EXPORT_LIFECYCLE_DAYS * DAY_MS;
    return this.#now() + this.#urlSeconds * 1000 + LIFECYCLE_MARGIN_MS <= expiry;
  }

  async #signed(objectKey: string, size: number): Promise<SaveExport> {
    const issued = this.#now();
    // The credentials' expiry is wall-clock time, as S3's check of the URL is.
    const presigner = await this.#store.urlSigner.open(this.#urlSeconds);
    // No ChecksumMode: a GET whose URL signs x-amz-checksum-mode is refused to plain clients.
    const get = new GetObjectCommand({ Bucket: this.#store.bucket, Key: objectKey });
    const url = await presigner.sign(get, objectKey);
    return { url, size, expires: new Date(issued + presigner.expiresIn * 1000) };
  }
}

/**
 * The bytes the uploader has taken so far. It sends each part before it reads on (one part in
 * flight), so this runs ahead of what S3 holds by at most the part being sent.
 */
async function* counted(
  source: AsyncIterable<Uint8Array>,
  onProgress: (bytes: number) => void,
): AsyncGenerator<Uint8Array> {
  let bytes = 0;
  for await (const chunk of source) {
    yield chunk;
    bytes += chunk.length;
    onProgress(bytes);
  }
}
