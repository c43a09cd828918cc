import type { Readable } from 'node:stream';
import type { Digest } from '../digest.ts';

export interface StoredBlob {
  digest: Digest;
  size: number;
}

export interface ListedBlob extends StoredBlob {
  /** Milliseconds since the epoch the bytes were committed; lets GC spare fresh orphans. */
  modifiedAt: number;
}

export interface ByteRange {
  start: number;
  /** Inclusive, as in HTTP Range; omitted means to the end. */
  end?: number;
}

/**
 * Content-addressed bytes. Implementations guarantee invariant 1: an object stored under a
 * digest always holds bytes that hash to it. `write` hashes while it streams and commits only
 * after size and digest matched; on any failure nothing is left under the digest.
 */
export interface BlobStore {
  stat(digest: Digest): Promise<StoredBlob | undefined>;
  /** Streams the bytes; rejects with NotFoundError when absent. */
  read(digest: Digest, range?: ByteRange): Promise<Readable>;
  /**
   * Streams `body` in. With `expected.digest`, the bytes must hash to it (DigestMismatchError
   * otherwise); with `expected.size`, they must be exactly that long. Without a digest the blob
   * is stored under the digest it hashes to (tarball loads). Idempotent for equal content.
   */
  write(body: Readable, expected?: { digest?: Digest; size?: number }): Promise<StoredBlob>;
  /** Removes the blob; absent blobs are not an error. */
  delete(digest: Digest): Promise<void>;
  list(): AsyncIterable<ListedBlob>;
}

/** What a sweep of staged writes removed. */
export interface SweptStaging {
  files: number;
  bytes: number;
}

/**
 * A store whose writes stage their bytes before committing them (temp files, staging objects)
 * can reclaim what writers that died halfway left behind. A writer known to be gone (a dead
 * process on this host) loses its staging at once; any other is reclaimed only once idle for
 * `idleMs`, since it may still be writing.
 */
export interface StagingSweeper {
  sweepStaging(idleMs: number, now?: number): Promise<SweptStaging>;
}

export function stagingSweeperOf(blobs: object): StagingSweeper | undefined {
  const candidate = blobs as Partial<StagingSweeper>;
  return typeof candidate.sweepStaging === 'function' ? (blobs as StagingSweeper) : undefined;
}

/**
 * An optional capability (not every BlobStore has one): a URL that lets a client fetch a
 * blob's bytes straight from storage, e.g. large tarballs past the Lambda response limits, or a
 * registry client's blob GET answered with a redirect.
 */
export interface PresignedBlobUrls {
  /**
   * A URL anyone holding it can GET the blob from for up to `expiresSeconds` (1 s to 7 days):
   * less when the storage credentials expire sooner, and `expiresIn` says how long. It does not
   * check that the blob exists: fetching an absent one answers 404.
   */
  presignedGetUrl(digest: Digest, expiresSeconds: number): Promise<PresignedUrl>;
}

/** A presigned URL and the seconds it stays valid from when it was signed. */
export interface PresignedUrl {
  url: string;
  expiresIn: number;
}

export function presignedBlobUrlsOf(blobs: object): PresignedBlobUrls | undefined {
  const candidate = blobs as Partial<PresignedBlobUrls>;
  return typeof candidate.presignedGetUrl === 'function' ? (blobs as PresignedBlobUrls) : undefined;
}
