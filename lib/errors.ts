/**
 * One base class for every error the core raises on purpose. The code decides the HTTP status
 * (one table, below); the message is what the client sees, worded as Docker words it where
 * Docker has a word for it.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'INVALID_REFERENCE'
  | 'NOT_FOUND'
  | 'REGISTRY_NOT_ALLOWED'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'CONFLICT'
  | 'DIGEST_MISMATCH'
  | 'INVALID_IMAGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'UPSTREAM_ERROR'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_RATE_LIMITED'
  | 'BLOB_NOT_LIVE'
  | 'INSUFFICIENT_STORAGE'
  | 'INTERNAL';

export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  INVALID_REFERENCE: 400,
  NOT_FOUND: 404,
  REGISTRY_NOT_ALLOWED: 403,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  CONFLICT: 409,
  DIGEST_MISMATCH: 400,
  INVALID_IMAGE: 400,
  UNSUPPORTED_MEDIA_TYPE: 400,
  PAYLOAD_TOO_LARGE: 413,
  UPSTREAM_ERROR: 502,
  UPSTREAM_TIMEOUT: 504,
  UPSTREAM_RATE_LIMITED: 502,
  BLOB_NOT_LIVE: 503,
  INSUFFICIENT_STORAGE: 507,
  INTERNAL: 500,
};

export class ImageCacheError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  get status(): number {
    return STATUS_BY_CODE[this.code];
  }
}

export class InvalidArgumentError extends ImageCacheError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

export class InvalidReferenceError extends ImageCacheError {
  constructor(message = 'invalid reference format') {
    super('INVALID_REFERENCE', message);
  }
}

export class NotFoundError extends ImageCacheError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

export class ConflictError extends ImageCacheError {
  constructor(message: string) {
    super('CONFLICT', message);
  }
}

/** Bytes did not hash to, or were not as long as, the digest and size that named them. */
export class DigestMismatchError extends ImageCacheError {
  constructor(message: string) {
    super('DIGEST_MISMATCH', message);
  }
}

/**
 * Bytes that hash right but do not make an image: a layer that is not a tar, a config that
 * lists another number of layers than the manifest. Nothing that names them is committed.
 */
export class InvalidImageError extends ImageCacheError {
  constructor(message: string) {
    super('INVALID_IMAGE', message);
  }
}

export class UpstreamError extends ImageCacheError {
  /** Whether trying again (after backoff) can succeed: resets, 5xx, 429. */
  readonly retryable: boolean;
  constructor(
    code:
      | 'UPSTREAM_ERROR'
      | 'UPSTREAM_TIMEOUT'
      | 'UPSTREAM_RATE_LIMITED'
      | 'NOT_FOUND'
      | 'UNAUTHORIZED',
    message: string,
    options: { retryable?: boolean; cause?: unknown } = {},
  ) {
    super(code, message, { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }
}

/**
 * A 429 not waited out. `retryAt` is when the registry said to try again (Retry-After), absent
 * when it did not say; background work pauses the registry until then.
 */
export class UpstreamRateLimitedError extends UpstreamError {
  readonly retryAt: number | undefined;
  constructor(message: string, retryAt: number | undefined) {
    super('UPSTREAM_RATE_LIMITED', message, { retryable: true });
    this.retryAt = retryAt;
  }
}

/**
 * A writer found a blob it relies on in state `deleting` (or gone) at commit time: the garbage
 * collector won the race. The writer stores the blob again and retries the commit.
 */
export class BlobNotLiveError extends ImageCacheError {
  readonly digests: readonly string[];
  constructor(digests: readonly string[]) {
    super('BLOB_NOT_LIVE', `blobs are being garbage collected: ${digests.join(', ')}`);
    this.digests = digests;
  }
}

/**
 * The cache's own storage is full (disk, quota, or the SQLite file's volume). Nothing was
 * committed by the write that hit it; the same request succeeds once space is freed.
 */
export class StorageFullError extends ImageCacheError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INSUFFICIENT_STORAGE', message, options);
  }
}

/** errno codes (fs) and SQLite result codes that mean "no space left". */
const STORAGE_FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

export function isStorageFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && STORAGE_FULL_CODES.has(code);
}

/**
 * An error as the client may see it: ours as they are, a raw "no space left" from a layer that
 * did not translate it (the catalog's SQLite file) as a StorageFullError, anything else unknown.
 */
function knownError(error: unknown): ImageCacheError | undefined {
  if (error instanceof ImageCacheError) return error;
  if (isStorageFull(error)) {
    return new StorageFullError(
      `no space left on the cache's storage (${(error as { code: string }).code}): free space and try again`,
      { cause: error },
    );
  }
  return undefined;
}

/** Marks an error the log has (on the error itself: no state outlives the failure). */
const LOGGED = Symbol('image-cache logged');

/**
 * The operator hears of every failure that is the server's, once, however many layers pass it
 * on: unexpected errors with their stack, a full disk as one line. Clients never see either's
 * internals. Refusals of bad input and upstream failures are the client's answer, not a log.
 */
function logServerFailure(original: unknown, known: ImageCacheError | undefined): void {
  const key = typeof original === 'object' && original !== null ? original : undefined;
  if (key && LOGGED in key) return;
  if (known && known.code !== 'INSUFFICIENT_STORAGE' && known.code !== 'INTERNAL') return;
  if (key && Object.isExtensible(key)) Object.defineProperty(key, LOGGED, { value: true });
  if (known?.code === 'INSUFFICIENT_STORAGE') console.error(`image-cache: ${known.message}`);
  else console.error('image-cache: unexpected error:', original);
}

/** The body Docker clients expect on every error: `{"message": "..."}`. */
export function errorBody(error: unknown): { status: number; body: { message: string } } {
  const known = knownError(error);
  logServerFailure(error, known);
  // An INTERNAL error's text names our own keys, operations and SDK answers: logged above, never
  // sent. Every other code is a deliberate answer whose message was written for the client.
  if (known && known.code !== 'INTERNAL') {
    return { status: known.status, body: { message: known.message } };
  }
  return { status: 500, body: { message: 'internal server error' } };
}

/** The reference names a registry outside IMAGE_CACHE_REGISTRIES; nothing was contacted. */
export class RegistryNotAllowedError extends ImageCacheError {
  constructor(registry: string) {
    super(
      'REGISTRY_NOT_ALLOWED',
      `registry ${registry} is not allowed: add it to IMAGE_CACHE_REGISTRIES to cache its images`,
    );
  }
}
