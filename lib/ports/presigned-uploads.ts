/**
 * An optional capability of a BlobStore (S3 has it, the filesystem does not): a client uploads
 * a tarball straight to storage through presigned URLs, past the front door's request limits
 * (API Gateway's 10 MB), then asks the server to load it from there.
 */
import type { Readable } from 'node:stream';

export interface UploadPartUrl {
  number: number;
  url: string;
}

export type UploadTicket = {
  /** Names the upload in the commit path; opaque to clients. */
  id: string;
  /** Seconds the URLs stay valid. */
  expiresIn: number;
} & (
  | { kind: 'single'; url: string; partSize: number }
  | { kind: 'multipart'; parts: UploadPartUrl[]; partSize: number }
);

export interface UploadedPart {
  number: number;
  etag: string;
}

export interface PresignedUploads {
  /** Starts an upload of `size` bytes; multipart above the store's threshold. */
  createUpload(size: number): Promise<UploadTicket>;
  /**
   * Completes the upload (multipart: with the client's part list) and opens the object. A
   * missing or unfinished upload is a NotFoundError or an InvalidArgumentError.
   */
  openUpload(id: string, parts: UploadedPart[] | undefined): Promise<Readable>;
  /**
   * Completes the upload without opening it, and answers the id of the stored object, which
   * `openUpload` opens without parts: a background job then carries one short id rather than a
   * list of up to 10,000 parts. Fails as openUpload does.
   */
  completeUpload(id: string, parts: UploadedPart[] | undefined): Promise<string>;
  /** Removes the uploaded object (and aborts an unfinished multipart upload); idempotent. */
  discardUpload(id: string): Promise<void>;
}

/** Whether a blob store offers presigned uploads (`blobs.presignedUploads`). */
export function presignedUploadsOf(blobs: object): PresignedUploads | undefined {
  const candidate = (blobs as { presignedUploads?: PresignedUploads }).presignedUploads;
  return candidate && typeof candidate.createUpload === 'function' ? candidate : undefined;
}
