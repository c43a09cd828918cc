/**
 * Presigned uploads for `POST /cache/loads` (PresignedUploads): a client PUTs a tarball straight
 * to the bucket, in parts when it is large, then the server loads it from there. The object key
 * is derived from the upload's id (keys.ts); a multipart upload's S3 UploadId travels in the id
 * (`<uuid>.<base64url UploadId>`), so the server keeps no state between create and commit.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { ImageCacheError, InvalidArgumentError, NotFoundError } from '../../errors.ts';
import type {
  PresignedUploads,
  UploadedPart,
  UploadTicket,
} from '../../ports/presigned-uploads.ts';
import { s3Call, s3ErrorCode } from './errors.ts';
import type { S3Keys } from './keys.ts';
import { MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, MiB } from './part-size.ts';
import type { UrlSigner } from './presign.ts';

export interface S3UploadsOptions {
  client: S3Client;
  /** The bucket's signer (the store's), so every URL's lifetime is capped the same way. */
  urlSigner: UrlSigner;
  bucket: string;
  keys: S3Keys;
  /**
   * Sizes above this are multipart uploads in parts of this size at least (grown to fit in
   * 10,000 parts); default 64 MiB (IMAGE_CACHE_UPLOAD_PART_SIZE); 5 MiB at the least.
   */
  partSize?: number;
  /** How long the URLs stay valid; default one hour. */
  expiresSeconds?: number;
}

/**
 * URLs handed out in one answer at most: about 600 bytes each, so the answer stays far below a
 * Lambda response's 6 MB. Below S3's 10,000 parts; 5 TiB still fits (parts of 2.5 GiB).
 */
export const MAX_UPLOAD_PARTS = 2000;

/** The part size for a client upload of `size` bytes: the floor, grown (in whole MiB) to fit. */
export function uploadPartSize(size: number, floor: number): number {
  const needed = Math.ceil(Math.ceil(size / Math.min(MAX_PARTS, MAX_UPLOAD_PARTS)) / MiB) * MiB;
  return Math.min(MAX_PART_SIZE, Math.max(floor, MIN_PART_SIZE, needed));
}

const ID = /^([a-f0-9-]{36})(?:\.([A-Za-z0-9_-]+))?$/;

export class S3Uploads implements PresignedUploads {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #keys: S3Keys;
  readonly #urlSigner: UrlSigner;
  readonly #partSize: number;
  readonly #expires: number;

  constructor(options: S3UploadsOptions) {
    this.#client = options.client;
    this.#urlSigner = options.urlSigner;
    this.#bucket = options.bucket;
    this.#keys = options.keys;
    this.#partSize = Math.max(MIN_PART_SIZE, options.partSize ?? 64 * MiB);
    this.#expires = options.expiresSeconds ?? 3600;
  }

  async createUpload(size: number): Promise<UploadTicket> {
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new InvalidArgumentError('size must be the tarball length in bytes, more than 0');
    }
    if (size > MAX_OBJECT_SIZE) {
      throw new ImageCacheError('PAYLOAD_TOO_LARGE', `${size} bytes exceeds S3's object limit`);
    }
    const uuid = randomUUID();
    const key = this.#keys.upload(uuid);
    const presigner = await this.#urlSigner.open(this.#expires);
    const { expiresIn } = presigner;
    if (size <= this.#partSize) {
      const url = await presigner.sign(
        new PutObjectCommand({ Bucket: this.#bucket, Key: key }),
        key,
      );
      return { id: uuid, kind: 'single', url, partSize: size, expiresIn };
    }
    const partSize = uploadPartSize(size, this.#partSize);
    const created = await s3Call(
      this.#client.send(new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: key })),
      'CreateMultipartUpload',
      key,
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new ImageCacheError('INTERNAL', 'S3 returned no UploadId');
    const count = Math.ceil(size / partSize);
    const parts = await Promise.all(
      Array.from({ length: count }, async (_, i) => ({
        number: i + 1,
        url: await presigner.sign(
          new UploadPartCommand({
            Bucket: this.#bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: i + 1,
          }),
          key,
        ),
      })),
    );
    const id = `${uuid}.${Buffer.from(uploadId).toString('base64url')}`;
    return { id, kind: 'multipart', parts, partSize, expiresIn };
  }

  async openUpload(id: string, parts: UploadedPart[] | undefined): Promise<Readable> {
    const { key } = this.#parse(await this.completeUpload(id, parts));
    const out = await s3Call(
      this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key })),
      'GetObject',
      key,
    );
    if (!(out.Body instanceof Readable)) {
      throw new ImageCacheError('INTERNAL', `S3 GetObject ${key}: the body is not a Node stream`);
    }
    return out.Body;
  }

  async completeUpload(id: string, parts: UploadedPart[] | undefined): Promise<string> {
    const { key, uploadId } = this.#parse(id);
    if (uploadId !== undefined) {
      if (!parts || parts.length === 0) {
        throw new InvalidArgumentError('a multipart upload needs {"parts":[{"number","etag"}]}');
      }
      const sorted = [...parts].sort((a, b) => a.number - b.number);
      try {
        await this.#client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.#bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: {
              Parts: sorted.map((p) => ({ PartNumber: p.number, ETag: p.etag })),
            },
          }),
        );
      } catch (error) {
        const code = s3ErrorCode(error);
        if (code === 'NoSuchUpload') {
          throw new NotFoundError(`upload ${id} not found (expired, or already committed)`);
        }
        if (code === 'InvalidPart' || code === 'InvalidPartOrder' || code === 'EntityTooSmall') {
          throw new InvalidArgumentError(`upload ${id}: the parts do not complete it (${code})`);
        }
        return s3Call(Promise.reject(error), 'CompleteMultipartUpload', key);
      }
    }
    // The completed object is named by the upload's own part of the id, as a single PUT is.
    return id.split('.')[0]!;
  }

  async discardUpload(id: string): Promise<void> {
    const { key, uploadId } = this.#parse(id);
    if (uploadId !== undefined) {
      await this.#client
        .send(
          new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: key, UploadId: uploadId }),
        )
        .catch(() => {});
    }
    await s3Call(
      this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key })),
      'DeleteObject',
      key,
    );
  }

  #parse(id: string): { key: string; uploadId: string | undefined } {
    const match = ID.exec(id);
    if (!match) throw new NotFoundError(`upload ${id} not found`);
    const key = this.#keys.upload(match[1]!);
    const uploadId =
      match[2] === undefined ? undefined : Buffer.from(match[2], 'base64url').toString();
    return { key, uploadId };
  }
}
