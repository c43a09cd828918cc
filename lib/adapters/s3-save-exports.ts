import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ImageCacheError } from '../errors.ts';
import type { SaveExport, SaveExports } from '../save/export.ts';
import { isMissingKey, s3Call } from './s3/errors.ts';
import { uploadFromStream } from './s3/multipart.ts';
import { choosePartSize, DEFAULT_PART_SIZING } from './s3/part-size.ts';
import type { S3BlobStore } from './s3-blob-store.ts';

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

  async #signed(objectKey: string, size: number): Promise<SaveExport> {
    const issued = this.#now();
    const url = await s3Call(
      getSignedUrl(
        this.#store.client,
        new GetObjectCommand({ Bucket: this.#store.bucket, Key: objectKey }),
        { expiresIn: this.#urlSeconds },
      ),
      'presign GetObject',
      objectKey,
    );
    if (!url) throw new ImageCacheError('INTERNAL', `no presigned URL for ${objectKey}`);
    return { url, size, expires: new Date(issued + this.#urlSeconds * 1000) };
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
